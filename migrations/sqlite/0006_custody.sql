-- Custody refusals (E_NOT_CUSTODIAN) name the unit whose document or person was touched, so
-- that its readers see the refusal as an alert (docs/custody.md).
ALTER TABLE rejected_reports ADD COLUMN touched_unit text;
