-- Migration 11: session state. A run keeps the JSON object its steps change with ctx.state.set
-- and ctx.state.append, written in the transaction that commits each step's success.
ALTER TABLE runs ADD COLUMN state BLOB;
