-- The revert benches' tables (the shape bench/src/bin/revert.rs makes):
-- accounts, :accounts rows of them (psql -v accounts=N), and events that
-- refer to them. Used by bench/revert_peer.sh and bench/revert_instructions.sh.
CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, name text, balance numeric(12,2),
                       updated_at timestamptz DEFAULT now());
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                     account_id int NOT NULL REFERENCES accounts, kind text, at timestamptz DEFAULT now());
INSERT INTO accounts (id, email, name, balance)
SELECT g, 'user' || g || '@example.com', 'User ' || g, g % 1000 FROM generate_series(1, :accounts) AS g;
