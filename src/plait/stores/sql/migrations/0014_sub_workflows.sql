-- Migration 14: sub-workflows (issue 19, item 6). A run started by a step's `ctx.call` keeps
-- the step that called it (its `parent_run` is the caller's run): the child's end makes that
-- step ready again, in the transaction that ends the child.
ALTER TABLE runs ADD COLUMN called_by TEXT;
