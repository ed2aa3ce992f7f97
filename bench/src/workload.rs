//! The five workloads of WORKLOADS.md and the two dataset scales.

use std::fmt;

use crate::dataset::DatasetSize;

/// One of the object-graph load workloads of WORKLOADS.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// "orders page": the first orders with customer, items + product, tags.
    W1,
    /// "all orders": W1's graph for every order.
    W2,
    /// "composite": products with stock + warehouse and warehouses via M2M.
    W3,
    /// "concurrent requests": concurrent tasks, per-order customer and tags.
    W4,
    /// "nested waves": like W4 but customer + referrer and items + product.
    W5,
}

impl Workload {
    /// All workloads, in order.
    pub const ALL: [Workload; 5] = [
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
    ];

    /// The display name, `"W1"` .. `"W5"`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
            Workload::W4 => "W4",
            Workload::W5 => "W5",
        }
    }

    /// The lowercase name used in the checksum block, `"w1"` .. `"w5"`.
    pub fn key(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
            Workload::W4 => "w4",
            Workload::W5 => "w5",
        }
    }

    /// Parses `W1`..`W5` (case-insensitive).
    pub fn parse(s: &str) -> Option<Workload> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name().eq_ignore_ascii_case(s))
    }

    /// The checksum keys of this workload, in WORKLOADS.md order.
    pub fn checksum_keys(self) -> &'static [&'static str] {
        const ORDER_GRAPH: &[&str] = &[
            "orders",
            "order_id_sum",
            "customer_id_sum",
            "customer_email_len_sum",
            "items",
            "item_value_sum",
            "item_pos_sum",
            "product_price_sum",
            "tag_links",
            "tag_id_sum",
            "tag_pos_sum",
        ];
        match self {
            Workload::W1 | Workload::W2 => ORDER_GRAPH,
            Workload::W3 => &[
                "products",
                "product_id_sum",
                "stock_rows",
                "stock_qty_sum",
                "stock_pos_qty_sum",
                "stock_wh_name_len_sum",
                "pw_links",
                "pw_wh_name_len_sum",
                "pw_pos_code_sum",
            ],
            Workload::W4 => &[
                "orders",
                "order_id_sum",
                "customer_id_sum",
                "customer_email_len_sum",
                "tag_links",
                "tag_id_sum",
                "tag_pos_sum",
            ],
            Workload::W5 => &[
                "orders",
                "order_id_sum",
                "customer_id_sum",
                "referrers",
                "referrer_id_sum",
                "referrer_email_len_sum",
                "items",
                "item_value_sum",
                "product_price_sum",
            ],
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which dataset the bench runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// The WORKLOADS.md dataset (schema `matrx_bench`); checksums must equal
    /// the published values.
    Full,
    /// The same formulas with 1/20 of the rows (schema `matrx_bench_tiny`)
    /// for a CI smoke run; expected checksums are computed by the database.
    Tiny,
    /// The same formulas with 10x the customers, products and orders (schema
    /// `matrx_bench_x10`: 200,000 orders), for the streaming benchmark; expected
    /// checksums are computed by the database.
    X10,
}

/// The parameters of the workloads at one scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadParams {
    /// W1 loads the orders with the `w1_orders` smallest ids.
    pub w1_orders: i64,
    /// W4/W5: number of concurrent tasks (requests).
    pub tasks: usize,
    /// W4/W5: task k handles order ids `k*orders_per_task+1 ..= (k+1)*orders_per_task`.
    pub orders_per_task: i64,
}

impl WorkloadParams {
    /// The order ids of W4/W5 task `k`.
    pub fn task_order_ids(&self, k: usize) -> Vec<i64> {
        let first = k as i64 * self.orders_per_task + 1;
        (first..first + self.orders_per_task).collect()
    }

    /// Total number of orders over all W4/W5 tasks (ids `1..=` this).
    pub fn task_orders_total(&self) -> i64 {
        self.tasks as i64 * self.orders_per_task
    }
}

impl Scale {
    /// Parses `full`, `tiny` or `x10`.
    pub fn parse(s: &str) -> Option<Scale> {
        match s {
            "full" => Some(Scale::Full),
            "tiny" => Some(Scale::Tiny),
            "x10" => Some(Scale::X10),
            _ => None,
        }
    }

    /// `"full"`, `"tiny"` or `"x10"`.
    pub fn name(self) -> &'static str {
        match self {
            Scale::Full => "full",
            Scale::Tiny => "tiny",
            Scale::X10 => "x10",
        }
    }

    /// The schema the bench loads this scale into (never `shop`).
    pub fn schema(self) -> &'static str {
        match self {
            Scale::Full => "matrx_bench",
            Scale::Tiny => "matrx_bench_tiny",
            Scale::X10 => "matrx_bench_x10",
        }
    }

    /// The row counts of the dataset at this scale.
    pub fn dataset_size(self) -> DatasetSize {
        match self {
            Scale::Full => DatasetSize::FULL,
            Scale::Tiny => DatasetSize::TINY,
            Scale::X10 => DatasetSize::X10,
        }
    }

    /// The workload parameters at this scale.
    pub fn workload_params(self) -> WorkloadParams {
        match self {
            Scale::Full | Scale::X10 => WorkloadParams {
                w1_orders: 1000,
                tasks: 64,
                orders_per_task: 25,
            },
            Scale::Tiny => WorkloadParams {
                w1_orders: 50,
                tasks: 8,
                orders_per_task: 10,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_workloads() {
        assert_eq!(Workload::parse("w3"), Some(Workload::W3));
        assert_eq!(Workload::parse("W5"), Some(Workload::W5));
        assert_eq!(Workload::parse("W6"), None);
        for w in Workload::ALL {
            assert_eq!(Workload::parse(w.key()), Some(w));
        }
    }

    #[test]
    fn task_ids() {
        let p = Scale::Full.workload_params();
        assert_eq!(p.task_order_ids(0).first(), Some(&1));
        assert_eq!(p.task_order_ids(63).last(), Some(&1600));
        assert_eq!(p.task_orders_total(), 1600);
    }
}
