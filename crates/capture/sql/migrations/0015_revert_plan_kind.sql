-- pgtrail migration 0015: the plan of a revert says what each statement
-- is (a new last column, kind: delete, insert, restore, move, park,
-- unpark, delete_copies, insert_copies), so pgtrail.revert_plan and
-- pgtrail.revert return another row type. A function's row type cannot be
-- replaced: they are dropped here and created again by 70_revert.sql.
DROP FUNCTION IF EXISTS pgtrail.revert(jsonb, text, text);
DROP FUNCTION IF EXISTS pgtrail.revert_plan(jsonb, text);
