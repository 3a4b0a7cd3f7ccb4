-- The seals are evidence, as the log is: guard them the same way. Without this, `TRUNCATE audit_seals` left
-- nothing for `audit verify` to compare an edited log with, and a rebuild re-sealed the edited log. The
-- runner only ever appends seals, and nothing rebuilds them (see projections/seals.py), so no statement of
-- ours updates, deletes or truncates this table. A superuser who switches these triggers off is caught by
-- `audit verify`, which also checks that every event the sealer has passed has its seal.
CREATE FUNCTION audit_seals_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the seal chain is append-only: % on audit_seals is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_seals_append_only BEFORE UPDATE OR DELETE ON audit_seals
    FOR EACH ROW EXECUTE FUNCTION audit_seals_refuse_change();
CREATE TRIGGER audit_seals_no_truncate BEFORE TRUNCATE ON audit_seals
    FOR EACH STATEMENT EXECUTE FUNCTION audit_seals_refuse_change();
