-- Every refusal, warning and override wrote one server-log line starting with
-- "prodguard:", with key="value" fields a log shipper can parse. This test server logs to
-- log/postgresql.log inside its data directory.
CREATE TEMP TABLE server_log AS
SELECT regexp_replace(line, '^.*LOG:  ', '') AS line
  FROM regexp_split_to_table(pg_read_file('log/postgresql.log'), E'\n') AS line
 WHERE line LIKE '%LOG:  prodguard: %';

SELECT split_part(line, ' ', 2) AS event, count(*) > 0 AS logged
  FROM server_log GROUP BY 1 ORDER BY 1;

-- The first refusal of incident B's TRUNCATE, with the process id blanked out.
SELECT regexp_replace(line, 'pid="[0-9]+"', 'pid="…"') AS line
  FROM server_log
 WHERE line LIKE 'prodguard: refused guard="command" command="TRUNCATE" object="table \\"public.profiles\\""%'
 LIMIT 1;

-- Refused for a non-operator, with the reason they tried to use.
SELECT regexp_replace(line, 'pid="[0-9]+"', 'pid="…"') AS line
  FROM server_log
 WHERE line LIKE 'prodguard: refused %command="TRUNCATE" object="table \\"public.orders\\"" database="app" user="dev"%'
 LIMIT 1;

-- Overrides carry their reason.
SELECT regexp_replace(line, 'pid="[0-9]+"', 'pid="…"') AS line
  FROM server_log
 WHERE line LIKE 'prodguard: overridden %INC-1234%';

-- DROP DATABASE attempts are logged in the database they were issued from.
SELECT count(*) AS drop_database_refusals_from_postgres
  FROM server_log
 WHERE line LIKE 'prodguard: refused guard="command" command="DROP DATABASE"%database="postgres"%';

-- Settings changes refused from a session and from startup options.
SELECT count(*) > 0 AS logged
  FROM server_log
 WHERE line LIKE 'prodguard: refused guard="settings" command="SET" object="setting \\"prodguard.environment\\""%';

-- The row guard's refusals are logged the same way.
SELECT regexp_replace(line, 'pid="[0-9]+"', 'pid="…"') AS line
  FROM server_log
 WHERE line LIKE 'prodguard: refused guard="row" command="DELETE" object="table \\"public.refinements\\" without a WHERE clause"%'
 LIMIT 1;
SELECT count(*) > 0 AS logged
  FROM server_log
 WHERE line LIKE 'prodguard: refused guard="row" command="UPDATE" object="11 rows of table \\"public.refinements\\""%';

-- Exactly one line per event: PostgreSQL's STATEMENT and CONTEXT lines are not appended
-- to it (the statement is in prodguard.denied_attempts).
WITH l AS (
    SELECT line, lead(line) OVER (ORDER BY n) AS next
      FROM regexp_split_to_table(pg_read_file('log/postgresql.log'), E'\n') WITH ORDINALITY AS t(line, n))
SELECT count(*) > 0 AS events, count(*) FILTER (WHERE next ~ '\] (STATEMENT|CONTEXT):  ') AS followed_by_statement_or_context
  FROM l WHERE line LIKE '%LOG:  prodguard: %';
