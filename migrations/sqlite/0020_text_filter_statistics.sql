-- PostgreSQL's 0020 gives its planner statistics on the `q` and `resource` filters' expressions.
-- SQLite has no statistics on expressions and plans the page's query by its indexes alone (the
-- link table's key, walked newest first), which is the plan the PostgreSQL migration restores.
SELECT 1;
