-- Migration 14: reserved for another branch (issue 19 work in parallel); this placeholder keeps
-- the numbers 1..n on the subflows branch. Drop this file when the real 0014 is merged.
SELECT 1;
