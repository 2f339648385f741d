-- The rail network and its runs.
CREATE TABLE stations (
    telecode TEXT PRIMARY KEY CHECK (length(telecode) = 3),
    name     TEXT NOT NULL,
    pinyin   TEXT NOT NULL,
    initials TEXT NOT NULL,
    city     TEXT NOT NULL,
    country  TEXT
);

CREATE TABLE trains (
    code TEXT PRIMARY KEY
);

-- A train's calls in order; minutes are counted from the run date's midnight, China time.
CREATE TABLE stops (
    train_code TEXT    NOT NULL REFERENCES trains (code),
    seq        INTEGER NOT NULL CHECK (seq >= 0),
    telecode   TEXT    NOT NULL REFERENCES stations (telecode),
    arrive_min INTEGER CHECK (arrive_min >= 0),
    depart_min INTEGER CHECK (depart_min >= 0),
    km         INTEGER NOT NULL CHECK (km >= 0),
    PRIMARY KEY (train_code, seq)
);

-- A run is a train on a service date (YYYY-MM-DD, the date it leaves its first stop).
CREATE TABLE runs (
    train_code   TEXT NOT NULL REFERENCES trains (code),
    service_date TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'SCHEDULED' CHECK (status IN ('SCHEDULED', 'CANCELLED')),
    PRIMARY KEY (train_code, service_date)
);
CREATE INDEX runs_by_date ON runs (service_date);
