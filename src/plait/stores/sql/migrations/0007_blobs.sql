-- Placeholder on branch `artifacts` for branch `blobs`' migration 7 (migrations are numbered
-- without gaps); merging `blobs` replaces this file with theirs.
SELECT 1;
