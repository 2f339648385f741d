-- Users and their passengers. Passenger PII is encrypted by the server before it gets here;
-- id_no_index is a keyed hash (HMAC) of the ID number, so duplicates can be refused without
-- storing the number in the clear.
CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT   NOT NULL UNIQUE,
    password_hash TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE passengers (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (id),
    name_enc      BYTEA  NOT NULL,
    id_type       TEXT   NOT NULL,
    id_no_enc     BYTEA  NOT NULL,
    id_no_index   BYTEA  NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (user_id, id_no_index)
);
