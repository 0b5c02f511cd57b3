-- Privileges: application roles get what capture and set_context need and
-- nothing else. The trail's tables belong to the role that installed pgtrail;
-- capture writes them through SECURITY DEFINER functions with a pinned
-- search_path, so a role that can write audited tables can neither write,
-- edit nor delete the trail directly, nor forge what the database records.

REVOKE ALL ON ALL TABLES IN SCHEMA pgtrail FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgtrail FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgtrail FROM PUBLIC;
GRANT USAGE ON SCHEMA pgtrail TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.set_context(text, text, text, text, jsonb) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtrail.trigger_names() TO PUBLIC;
