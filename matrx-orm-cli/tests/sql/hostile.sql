-- Every naming hazard, every supported type, and the relation shapes generation
-- must infer. Loaded into a fresh schema (search_path), so no name is qualified.

CREATE TYPE "Mood Type" AS ENUM ('happy', 'so-so', 'Very Sad', 'type');
CREATE TYPE status AS ENUM ('new', 'done');
CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');

-- reserved words, mixed case, spaces, quotes, a leading digit, a 63-byte name
CREATE TABLE "User Accounts" (
    "ID"                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "type"              text NOT NULL,
    "fn"                integer,
    "self"              boolean NOT NULL DEFAULT false,
    "Mixed Case Name"   varchar(40) NOT NULL UNIQUE,
    "quote""d"          text,
    "1st place"         smallint,
    "mood"              "Mood Type" NOT NULL DEFAULT 'happy',
    "moods"             "Mood Type"[],
    "contact"           email,
    "a_column_name_that_is_exactly_sixty_three_bytes_long_in_utf8_xx" text
);
CREATE INDEX user_accounts_fn_idx ON "User Accounts" ("fn");

CREATE TABLE "group" (
    id      integer PRIMARY KEY,
    "where" text NOT NULL
);

CREATE TABLE "2fa codes" (
    id   integer PRIMARY KEY,
    code text NOT NULL
);

CREATE TABLE "option" (
    id    integer PRIMARY KEY,
    value text
);

CREATE TABLE table_with_a_name_of_exactly_sixty_three_bytes_for_the_tests_xx (
    id integer PRIMARY KEY
);

-- every supported type, and one unsupported (interval)
CREATE TABLE every_type (
    id      serial PRIMARY KEY,
    b       boolean NOT NULL,
    i2      smallint,
    i4      integer,
    i8      bigint,
    f4      real,
    f8      double precision,
    t       text,
    vc      varchar(20),
    ch      char(3),
    num     numeric,
    num_p   numeric(10,2),
    u       uuid,
    tstz    timestamptz NOT NULL DEFAULT now(),
    ts      timestamp,
    ts3     timestamp(3),
    d       date,
    tm      time,
    jb      jsonb,
    js      json,
    by      bytea,
    ai      integer[],
    at      text[],
    au      uuid[],
    ajb     jsonb[],
    abytea  bytea[],
    st      status NOT NULL DEFAULT 'new',
    doubled integer GENERATED ALWAYS AS (i4 * 2) STORED,
    span    interval,
    UNIQUE (i2, i4)
);
CREATE INDEX every_type_t_idx ON every_type (t);
CREATE INDEX every_type_lower_t_idx ON every_type (lower(t));
CREATE INDEX every_type_partial_idx ON every_type (i8) WHERE i8 > 0;

-- a composite FK to a composite PK, columns in another order than the key's
CREATE TABLE regions_grid (
    "Zone" text    NOT NULL,
    "Cell" integer NOT NULL,
    label  text    NOT NULL,
    PRIMARY KEY ("Zone", "Cell")
);
CREATE TABLE plots (
    id   bigint PRIMARY KEY,
    cell integer NOT NULL,
    zone text    NOT NULL,
    FOREIGN KEY (cell, zone) REFERENCES regions_grid ("Cell", "Zone")
);

-- a self many-to-many
CREATE TABLE friendships (
    user_id   bigint NOT NULL REFERENCES "User Accounts" ("ID"),
    friend_id bigint NOT NULL REFERENCES "User Accounts" ("ID"),
    PRIMARY KEY (user_id, friend_id)
);

-- a junction with payload
CREATE TABLE memberships (
    user_id   bigint  NOT NULL REFERENCES "User Accounts" ("ID"),
    group_id  integer NOT NULL REFERENCES "group" (id),
    joined_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, group_id)
);

-- a plain junction to a composite key
CREATE TABLE plot_owners (
    plot_id bigint  NOT NULL REFERENCES plots (id),
    owner   bigint  NOT NULL REFERENCES "User Accounts" ("ID"),
    PRIMARY KEY (plot_id, owner)
);

-- two FKs to one table
CREATE TABLE documents (
    id          uuid PRIMARY KEY,
    author_id   bigint NOT NULL REFERENCES "User Accounts" ("ID"),
    reviewer_id bigint REFERENCES "User Accounts" ("ID"),
    title       text NOT NULL
);

-- one-to-one: the FK is the primary key
CREATE TABLE profiles (
    user_id bigint PRIMARY KEY REFERENCES "User Accounts" ("ID"),
    bio     text
);

-- a self-reference
CREATE TABLE categories (
    id        integer PRIMARY KEY,
    parent_id integer REFERENCES categories (id),
    name      text NOT NULL
);

-- no primary key: no model
CREATE TABLE audit_log (
    at  timestamptz NOT NULL,
    msg text
);
