-- The masked passenger (name and ID number as a ticket prints them), kept beside the
-- encrypted originals so that issuing a ticket needs no decryption key.
ALTER TABLE passengers ADD COLUMN masked TEXT NOT NULL DEFAULT '';
