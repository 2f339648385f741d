-- Users and their passengers. Passenger PII is encrypted by the server before it gets here;
-- id_no_index is a keyed hash (HMAC) of the ID number, so duplicates can be refused without
-- storing the number in the clear.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE passengers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    name_enc      BLOB    NOT NULL,
    id_type       TEXT    NOT NULL,
    id_no_enc     BLOB    NOT NULL,
    id_no_index   BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (user_id, id_no_index)
);
