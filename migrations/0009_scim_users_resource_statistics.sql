-- The planner never uses statistics of the whole resource document: filters on attributes without a column
-- of their own read it with ->> and jsonb_array_elements, which no column statistics describe. Gathering
-- them was most of every ANALYZE of scim_users (450 of 650 ms for 148,000 rows), which a projection
-- rebuild runs, and autovacuum too as the table grows.
ALTER TABLE scim_users ALTER COLUMN resource SET STATISTICS 0;
