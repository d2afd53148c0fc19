-- Every data type a user can store (issue 15, items 4 and 5): one protected table with a
-- column of each built-in type (and arrays, domains, a composite, an enum, ranges and
-- multiranges, a 2 MB text and a 1 MB bytea). Every write PostgreSQL accepts is accepted
-- and audited; undoing a transaction puts back exactly what was there, compared column by
-- column with IS NOT DISTINCT FROM and as text. Then a property test: pseudo-random rows,
-- random changes in one transaction, undone, and the table equals its snapshot.
CREATE TYPE at_mood AS ENUM ('calm', 'busy', 'a "quoted", odd label');
CREATE TYPE at_inner AS (x numeric, tags text[]);
CREATE TYPE at_pair AS (a int, b text, c at_inner, d float8, e timestamptz, j json);
CREATE TYPE at_floatrange AS RANGE (subtype = float8);
CREATE DOMAIN at_positive AS numeric(8,3) CHECK (VALUE > 0);
CREATE DOMAIN at_label AS varchar(30) CHECK (VALUE <> '');
CREATE DOMAIN at_ints AS int[] CHECK (cardinality(VALUE) < 10);
CREATE DOMAIN at_doc AS jsonb CHECK (jsonb_typeof(VALUE) = 'object');
CREATE TABLE at_all (
    id int PRIMARY KEY,
    c_bool bool, c_int2 int2, c_int4 int4, c_int8 int8,
    c_numeric numeric, c_numeric_typmod numeric(12,4), c_float4 float4, c_float8 float8,
    c_money money, c_char "char", c_bpchar char(6), c_varchar varchar(20), c_text text,
    c_name name, c_bytea bytea, c_date date, c_time time, c_timetz timetz,
    c_timestamp timestamp(3), c_timestamptz timestamptz, c_interval interval,
    c_point point, c_line line, c_lseg lseg, c_box box, c_path path, c_polygon polygon,
    c_circle circle, c_cidr cidr, c_inet inet, c_macaddr macaddr, c_macaddr8 macaddr8,
    c_bit bit(8), c_varbit varbit(16), c_tsvector tsvector, c_tsquery tsquery, c_uuid uuid,
    c_xml xml, c_json json, c_jsonb jsonb, c_jsonpath jsonpath,
    c_pg_lsn pg_lsn, c_txid_snapshot txid_snapshot, c_pg_snapshot pg_snapshot,
    c_oid oid, c_xid xid, c_xid8 xid8, c_cid cid, c_tid tid, c_aclitem aclitem,
    c_refcursor refcursor, c_int2vector int2vector, c_oidvector oidvector,
    c_regclass regclass, c_regcollation regcollation, c_regconfig regconfig,
    c_regdictionary regdictionary, c_regnamespace regnamespace, c_regoper regoper,
    c_regoperator regoperator, c_regproc regproc, c_regprocedure regprocedure,
    c_regrole regrole, c_regtype regtype,
    c_int4range int4range, c_int8range int8range, c_numrange numrange, c_tsrange tsrange,
    c_tstzrange tstzrange, c_daterange daterange,
    c_int4multirange int4multirange, c_int8multirange int8multirange,
    c_nummultirange nummultirange, c_tsmultirange tsmultirange,
    c_tstzmultirange tstzmultirange, c_datemultirange datemultirange,
    c_floatrange at_floatrange, c_floatmultirange at_floatmultirange,
    c_enum at_mood, c_composite at_pair, c_positive at_positive, c_label at_label,
    c_ints at_ints, c_doc at_doc,
    a_bool bool[], a_int4 int4[], a_int8_2d int8[][], a_numeric numeric[], a_float8 float8[],
    a_text text[], a_bytea bytea[], a_timestamptz timestamptz[], a_uuid uuid[],
    a_json json[], a_jsonb jsonb[], a_point point[], a_enum at_mood[], a_composite at_pair[],
    a_int4range int4range[], a_inet inet[], a_interval interval[],
    big_text text, big_bytea bytea);
SELECT prodguard.protect('at_all', test_data => false);

-- Every built-in type a user can store has its column (PostgreSQL's internal types, whose
-- input functions refuse every value, cannot be stored): no type is missing.
SELECT t.typname AS type_without_column
  FROM pg_type t
 WHERE t.typnamespace = 'pg_catalog'::regnamespace
   AND t.typtype IN ('b', 'r', 'm') AND t.typname NOT LIKE '\_%'
   AND t.typname NOT IN ('gtsvector', 'pg_node_tree', 'pg_ndistinct', 'pg_dependencies',
                         'pg_mcv_list', 'pg_brin_bloom_summary', 'pg_brin_minmax_multi_summary')
   AND NOT EXISTS (SELECT FROM pg_attribute a
                    WHERE a.attrelid = 'at_all'::regclass AND a.attnum > 0 AND a.atttypid = t.oid)
 ORDER BY 1;

-- Row 1 sets every column, with each type's corner values (its json is written as jsonb
-- prints it: README's Known limits); row 2 is all NULLs; row 3 holds json that jsonb
-- cannot hold (\u0000, a lone surrogate) and a jsonb JSON null.
INSERT INTO at_all VALUES (1,
    true, -32768, 2147483647, -9223372036854775808,
    -123456789012345678901234567890.000100, 12345678.1200, 3.4028235e38, 1.7976931348623157e308,
    '-92233720368547758.08', 'x', 'ab', 'héllo wörld', E'tab\there "quoted" \\ back ☃ 𝄞', 'a name',
    '\x00ff10', '0044-03-15 BC', '24:00:00', '23:59:59.999999-15:59', '294276-12-31 23:59:59.999',
    '2026-12-01 10:00:00.123456+05:30', '178000000 years 11 mons -3 days 04:05:06.789',
    '(1.5,-2)', '{1,-1,0}', '[(0,0),(1,1e-10)]', '(3,3),(1,1)', '[(0,0),(1,1),(2,0)]',
    '((0,0),(0,1),(1,1),(1,0))', '<(0,0),1e300>',
    '192.168.100.128/25', '2001:db8::1/64', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05',
    B'10101010', B'1', 'a:1A fat:2B,4C cat:5D ''it''''s'':6', 'fat & (rat | !cat) <-> ''x y''',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '<doc a="1"><x>text &amp; more</x><!-- c --></doc>', '{"a": [1.10, "x", {}], "b": 0.0}',
    '{"n": 12345678901234567890123, "small": 0.000000000000000000001, "x": [1.10, null, true], "s": "\u00e9\ud83d\ude00"}',
    '$.a[*] ? (@ > 1.5 && @ like_regex "^x" flag "i")',
    '16/B374D848', '10:20:10,14,15', '10:20:10,14,15',
    '4294967295', '4294967295', '18446744073709551615', '4294967295', '(4294967295,65535)',
    'postgres=arwdDxt/postgres', 'my cursor', '1 -2 32767', '1 2 4294967295',
    'pg_class', '"C"', 'english', 'simple', 'public', '||/', '+(integer,integer)', 'now',
    'abs(numeric)', 'postgres', 'double precision',
    '[1,5)', '(,9223372036854775807)', '[-1.50,2.250]', '[2026-01-01 00:00:00.5,infinity)',
    '["2026-01-01 00:00:00+00","2026-01-02 12:00:00+00"]', 'empty',
    '{[1,3),[5,7)}', '{}', '{[1.5,2.5],(3,)}', '{[2026-01-01,2026-02-01)}',
    '{[2026-01-01 00:00+00,2026-02-01 00:00+00)}', '{[2026-01-01,2026-02-01),[2027-01-01,)}',
    '[1.5,NaN]', '{[-Infinity,0.5),[1e-300,1e300]}',
    'a "quoted", odd label', '(1,"x ""y""","(1.50,\"{a,\"\"b c\"\",NULL}\")",NaN,infinity,"[1.0, {}]")',
    12.500, 'label', '{1,NULL,3}', '{"k": {"deep": [1e-30, -0.0, 100000000000000000000]}}',
    '{true,NULL,false}', '[0:2]={1,NULL,-2147483648}', '{{1,2},{3,NULL}}', '{1.50,NaN,Infinity,-0.000}',
    '{NaN,Infinity,-Infinity,-0,5e-324,1e-320,0.1}', '{"","NULL",NULL,"a,b","{}","\\"}',
    '{"\\x","\\x00",NULL}', '{infinity,-infinity,"2026-01-01 00:00:00.000001+00"}',
    '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}', '{"{\"a\": [1.10, 2]}","\"s\"",NULL}',
    '{"{}","[]","\"s\"","1.0e2"}', '{"(1,2)","(0,0)"}',
    '{calm,busy}', '{"(1,a,,,,)",NULL}', '{"[1,2)",empty}', '{10.0.0.1/8,::1}',
    '{"1 day","-1 mons +2 days"}',
    repeat('0123456789abcdé', 140000), decode(repeat('00ff7f80', 262144), 'hex'));
INSERT INTO at_all (id) VALUES (2);
INSERT INTO at_all (id, c_json, c_jsonb, c_text)
     VALUES (3, '{"nul": "a\u0000b", "lone": "\ud800"}', 'null', 'json jsonb cannot hold');
SELECT id, length(big_text) AS text_chars, octet_length(big_bytea) AS bytea_bytes
  FROM at_all ORDER BY id;

-- The INSERT entries hold to_jsonb() of the rows (the 2 MB text and 1 MB bytea included),
-- except the columns a JSON value would not bring back exactly, which are kept as their
-- text: names of objects (qualified), json inside arrays and composites, floats inside
-- them (-0), arrays with other lower bounds, int2vector and oidvector.
SELECT (a.row_key ->> 'id')::int AS id,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_each(a.new_row) e(k, v) WHERE v IS DISTINCT FROM to_jsonb(t) -> k) AS kept_as_text,
       length(a.new_row ->> 'big_text') AS text_chars, length(a.new_row ->> 'big_bytea') AS bytea_chars
  FROM prodguard.audit_log a JOIN at_all t ON t.id = (a.row_key ->> 'id')::int
 WHERE a.table_name = 'at_all' AND a.action = 'INSERT' AND t.id IN (1, 2)
 ORDER BY 1;

-- Compares two tables with an id column, row by row and column by column: rows missing
-- or extra, and every column whose text differs or which IS DISTINCT FROM the other side
-- (for types with an equality operator; geometric types' = compares areas, not values).
-- int2vector and oidvector are also compared as arrays (their text hides the subscripts).
CREATE FUNCTION at_differences(got regclass, want regclass)
RETURNS TABLE (id int, column_name name, how text) LANGUAGE plpgsql AS $$
DECLARE
    col record;
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT coalesce(g.id, w.id), NULL::name, CASE WHEN g.id IS NULL THEN ''missing'' ELSE ''extra'' END
           FROM %s g FULL JOIN %s w ON g.id = w.id WHERE g.id IS NULL OR w.id IS NULL', got, want);
    FOR col IN SELECT a.attname, t.typname, t.typcategory
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                WHERE a.attrelid = want AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> 'id'
                ORDER BY a.attnum LOOP
        RETURN QUERY EXECUTE format(
            'SELECT g.id, %2$L::name, ''text'' FROM %3$s g JOIN %4$s w USING (id)
              WHERE g.%1$I::text IS DISTINCT FROM w.%1$I::text', col.attname, col.attname, got, want);
        IF col.typname IN ('int2vector', 'oidvector') THEN
            RETURN QUERY EXECUTE format(
                'SELECT g.id, %2$L::name, ''as array'' FROM %3$s g JOIN %4$s w USING (id)
                  WHERE g.%1$I::%5$s::text IS DISTINCT FROM w.%1$I::%5$s::text',
                col.attname, col.attname, got, want,
                CASE col.typname WHEN 'int2vector' THEN 'int2[]' ELSE 'oid[]' END);
        END IF;
        CONTINUE WHEN col.typcategory = 'G';
        BEGIN
            RETURN QUERY EXECUTE format(
                'SELECT g.id, %2$L::name, ''equality'' FROM %3$s g JOIN %4$s w USING (id)
                  WHERE g.%1$I IS DISTINCT FROM w.%1$I', col.attname, col.attname, got, want);
        EXCEPTION WHEN undefined_function THEN
            NULL;  -- no equality operator (point, json, xml, ...): the text decides
        END;
    END LOOP;
END $$;
CREATE TABLE at_before AS SELECT * FROM at_all;
-- (the comparison sees a difference when there is one)
CREATE TABLE at_other AS SELECT * FROM at_all;
ALTER TABLE at_other ADD PRIMARY KEY (id);
UPDATE at_other SET c_float8 = '-0', c_point = '(1.5,-2.0000001)', c_int2vector = '1 -2 32766' WHERE id = 1;
DELETE FROM at_other WHERE id = 3;
SELECT * FROM at_differences('at_other', 'at_before') ORDER BY 1, 2, 3;

-- Change every column of rows 1 and 2 in one transaction (they swap their values), and
-- row 3's json; undo the transaction.
BEGIN;
SELECT format('UPDATE at_all t SET (%s) = (SELECT %s FROM at_all s WHERE s.id = 3 - t.id) WHERE t.id IN (1, 2)',
              string_agg(quote_ident(attname), ', ' ORDER BY attnum),
              string_agg('s.' || quote_ident(attname), ', ' ORDER BY attnum))
  FROM pg_attribute
 WHERE attrelid = 'at_all'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'id'
\gexec
UPDATE at_all SET c_json = '[]', c_jsonb = '[]' WHERE id = 3;
SELECT pg_current_xact_id() AS txid \gset
COMMIT;
SELECT count(DISTINCT column_name) AS columns_changed FROM at_differences('at_all', 'at_before') WHERE id = 1;
SELECT prodguard.undo_transaction(:'txid') AS undone;
-- Every column of rows 1 and 2 is back exactly: no differences.
SELECT * FROM at_differences('at_all', 'at_before') WHERE id IN (1, 2) ORDER BY 1, 2, 3;
SELECT bool_and((v.*)::text = (b.*)::text) AS same_rows_as_text
  FROM at_all v JOIN at_before b USING (id) WHERE id IN (1, 2);
-- Row 3, as README's Known limits say: the json that jsonb cannot hold comes back as the
-- string of its text, and the jsonb JSON null as SQL NULL.
SELECT c_json, c_jsonb IS NULL AS jsonb_is_sql_null FROM at_all WHERE id = 3;

-- Delete every row in one transaction and undo it: the rows come back by INSERT, exactly.
BEGIN;
DELETE FROM at_all WHERE id IN (1, 2, 3);
SELECT pg_current_xact_id() AS txid \gset
COMMIT;
SELECT count(*) AS rows_left FROM at_all;
SELECT prodguard.undo_transaction(:'txid') AS undone;
SELECT * FROM at_differences('at_all', 'at_before') WHERE id IN (1, 2) ORDER BY 1, 2, 3;
SELECT bool_and((v.*)::text = (b.*)::text) AS same_rows_as_text
  FROM at_all v JOIN at_before b USING (id) WHERE id IN (1, 2);

-- Undo the re-insertion of row 2 (restore_row of a RESTORE entry: a delete by key).
SELECT prodguard.restore_row(max(id)) FROM prodguard.audit_log
 WHERE table_name = 'at_all' AND action = 'RESTORE' AND row_key = '{"id": 2}';
SELECT id FROM at_all ORDER BY id;

-- Every write was audited.
SELECT action, count(*) FROM prodguard.audit_log
 WHERE schema_name = 'public' AND table_name = 'at_all' GROUP BY action ORDER BY action;

-- Writes PostgreSQL accepts must not fail in the audit either: json numbers beyond
-- numeric's range, and json holding \u0000 inside an array, a composite or a domain.
CREATE TYPE at_jpair AS (a int, j json);
CREATE DOMAIN at_jdomain AS json;
CREATE TABLE at_json (id int PRIMARY KEY, j json, ja json[], c at_jpair, d at_jdomain);
SELECT prodguard.protect('at_json', test_data => false);
INSERT INTO at_json (id, j) VALUES (1, '{"n": 1e1000000}');
INSERT INTO at_json (id, j) VALUES (2, '-1e-1000000');
INSERT INTO at_json (id, ja) VALUES (3, ARRAY['"a\u0000b"'::json, '1e1000000']);
INSERT INTO at_json (id, c) VALUES (4, ROW(1, '"a\u0000b"'));
INSERT INTO at_json (id, d) VALUES (5, '{"\u0000": 1}');
INSERT INTO at_json (id, d) VALUES (6, '[1e1000000]');
SELECT id FROM at_json ORDER BY id;
SELECT action, count(*) FROM prodguard.audit_log WHERE table_name = 'at_json' GROUP BY 1 ORDER BY 1;

-- Values naming objects (regclass, regtype, regproc, ...) of the user's schemas come
-- back as they were, whatever search_path the restore runs with.
CREATE TABLE at_reg (id int PRIMARY KEY, c_regclass regclass, c_regtype regtype,
                     c_regproc regproc, c_regprocedure regprocedure, a_regclass regclass[]);
SELECT prodguard.protect('at_reg', test_data => false);
INSERT INTO at_reg VALUES (1, 'at_all', 'at_pair', 'at_differences',
                           'at_differences(regclass,regclass)', '{at_reg,pg_class}');
CREATE TABLE at_reg_before AS SELECT * FROM at_reg;
BEGIN;
UPDATE at_reg SET c_regclass = 'pg_class', c_regtype = 'int4', c_regproc = 'now',
                  c_regprocedure = 'now()', a_regclass = '{}' WHERE id = 1;
SELECT pg_current_xact_id() AS txid \gset
COMMIT;
SELECT prodguard.undo_transaction(:'txid') AS undone;
SELECT * FROM at_differences('at_reg', 'at_reg_before') ORDER BY 1, 2, 3;

-- The writing session's settings do not change what comes back: a change written with
-- another DateStyle, IntervalStyle, extra_float_digits and TimeZone is undone exactly.
CREATE TABLE at_session (id int PRIMARY KEY, f8 float8, f4 float4, af8 float8[],
                         iv interval, aiv interval[], dr daterange, tsr tsrange,
                         tstzr tstzrange, nr at_floatrange);
SELECT prodguard.protect('at_session', test_data => false);
INSERT INTO at_session VALUES (1, 0.1::float8 + 0.2, 1.1::float4 * 3, ARRAY[1 / 3::float8],
    '-1 days -02:03:04', '{"-1 days -02:03:04"}', '[2026-02-01,2026-03-05)',
    '["2026-02-01 10:00","2026-03-01 00:00")', '["2026-02-01 10:00+00","2026-02-02 10:00+00")',
    '[1e-7,0.30000000000000004]');
CREATE TABLE at_session_before AS SELECT * FROM at_session;
BEGIN;
SET LOCAL DateStyle = 'SQL, DMY';
SET LOCAL IntervalStyle = 'sql_standard';
SET LOCAL extra_float_digits = 0;
SET LOCAL TimeZone = 'Asia/Kolkata';
UPDATE at_session SET f8 = 1, f4 = 1, af8 = '{}', iv = '1 day', aiv = '{}', dr = 'empty',
                      tsr = 'empty', tstzr = 'empty', nr = 'empty' WHERE id = 1;
SELECT pg_current_xact_id() AS txid \gset
COMMIT;
SELECT prodguard.undo_transaction(:'txid') AS undone;
SELECT * FROM at_differences('at_session', 'at_session_before') ORDER BY 1, 2, 3;

-- Property test: 200 pseudo-random rows (a fixed seed): numerics of any scale, NaN and
-- the infinities, floats with their special values, text with any Unicode character,
-- nested jsonb with big and small numbers, arrays, timestamps (BC, infinity), bytea.
SELECT setseed(0.42);
CREATE TABLE at_prop (id int PRIMARY KEY, n numeric, f8 float8, f4 float4, t text, j jsonb,
                      ai int[], at text[], ts timestamptz, d date, iv interval, b bytea);
SELECT prodguard.protect('at_prop', test_data => false);
CREATE FUNCTION at_random_row(g int) RETURNS at_prop LANGUAGE sql VOLATILE AS $$
SELECT g,
       CASE WHEN random() < 0.05 THEN NULL
            WHEN random() < 0.05 THEN (ARRAY['NaN', 'Infinity', '-Infinity', '0.000'])[1 + (random() * 3)::int]::numeric
            ELSE round((((random() - 0.5) * 2e15)::bigint || 'e' || e)::numeric,
                       greatest(0, -e) + (random() * 6)::int) END,
       CASE WHEN random() < 0.05 THEN NULL
            WHEN random() < 0.1 THEN (ARRAY['NaN', 'Infinity', '-Infinity', '0', '1.7976931348623157e308',
                                            '5e-324', '2.2250738585072014e-308'])[1 + (random() * 6)::int]::float8
            ELSE (random() - 0.5) * 10 ^ (random() * 600 - 300) END,
       CASE WHEN random() < 0.1 THEN 'NaN'::float4
            ELSE ((random() - 0.5) * 10 ^ (random() * 60 - 30))::float4 END,
       CASE WHEN random() < 0.05 THEN NULL ELSE
            (SELECT coalesce(string_agg(chr(CASE WHEN r < 0.5 THEN 32 + (random() * 94)::int
                                                 WHEN r < 0.6 THEN 1 + (random() * 30)::int
                                                 WHEN r < 0.9 THEN 160 + (random() * 55000)::int
                                                 ELSE 65536 + (random() * 100000)::int END), ''), '')
               FROM (SELECT random() AS r FROM generate_series(1, (random() * 60)::int + 0 * g)) c) END,
       CASE WHEN random() < 0.05 THEN NULL ELSE
            jsonb_build_object(
                'big', round((random() * 1e30)::numeric * 10::numeric ^ (random() * 40)::int, (random() * 10)::int),
                'small', (((random() * 1e15)::bigint || 'e-' || (15 + (random() * 40)::int))::numeric),
                'neg', -round(random()::numeric, (random() * 12)::int),
                's', md5(random()::text) || chr(8364) || E'\n"\\',
                'nested', jsonb_build_array(g, NULL, random() < 0.5, jsonb_build_object('deep',
                          jsonb_build_array(round(random()::numeric * 1e6, (random() * 6)::int), '', '{}'::jsonb, '[]'::jsonb))),
                'k' || (random() * 5)::int, random()) END,
       CASE WHEN random() < 0.1 THEN NULL
            ELSE ARRAY(SELECT CASE WHEN random() < 0.1 THEN NULL ELSE ((random() - 0.5) * 4e9)::bigint::int END
                         FROM generate_series(1, (random() * 6)::int + 0 * g)) END,
       CASE WHEN random() < 0.1 THEN NULL
            ELSE ARRAY(SELECT (ARRAY['', 'NULL', NULL, 'a,b', '{}', '"q"', E'back\\slash', 'é ☃',
                                      md5(random()::text)])[1 + (random() * 8)::int]
                         FROM generate_series(1, (random() * 5)::int + 0 * g)) END,
       CASE WHEN random() < 0.05 THEN NULL
            WHEN random() < 0.05 THEN (ARRAY['infinity', '-infinity'])[1 + (random() < 0.5)::int]::timestamptz
            WHEN random() < 0.05 THEN '0100-06-01 00:00:00+00 BC'::timestamptz + random() * interval '50 years'
            ELSE timestamptz '1900-01-01 00:00:00+00' + random() * interval '300 years' END,
       CASE WHEN random() < 0.05 THEN NULL
            ELSE date '0001-01-01' + (random() * 1000000)::int END,
       CASE WHEN random() < 0.05 THEN NULL
            ELSE make_interval((random() * 20 - 10)::int, (random() * 30 - 15)::int, 0,
                               (random() * 60 - 30)::int, 0, 0, round((random() * 1e6)::numeric, 6)::float8) END,
       CASE WHEN random() < 0.05 THEN NULL
            ELSE (SELECT coalesce(decode(string_agg(lpad(to_hex((random() * 255)::int), 2, '0'), ''), 'hex'), '')
                    FROM generate_series(1, (random() * 40)::int + 0 * g)) END
  FROM (SELECT (random() * 65 - 40)::int AS e) scale  -- numerics from 1e-40 to 1e40
$$;
INSERT INTO at_prop SELECT r.* FROM generate_series(1, 200) g, LATERAL at_random_row(g) r;
SELECT count(*) AS rows, count(DISTINCT t) AS distinct_texts, count(DISTINCT n) AS distinct_numerics
  FROM at_prop;
CREATE TABLE at_prop_snapshot AS SELECT * FROM at_prop;

-- Round 1: random UPDATEs (every column), DELETEs and INSERTs, each row changed once.
BEGIN;
UPDATE at_prop p SET (n, f8, f4, t, j, ai, at, ts, d, iv, b) =
       (SELECT r.n, r.f8, r.f4, r.t, r.j, r.ai, r.at, r.ts, r.d, r.iv, r.b FROM at_random_row(p.id) r)
 WHERE id % 4 = 0;
UPDATE at_prop SET t = coalesce(t, '') || chr(128512), j = j || '{"added": 1.50}', n = -n,
                   ai = ai || 7, ts = ts + interval '1 microsecond'
 WHERE id % 4 = 1;
DELETE FROM at_prop WHERE id % 4 = 2;
INSERT INTO at_prop SELECT r.* FROM generate_series(1001, 1050) g, LATERAL at_random_row(g) r;
SELECT pg_current_xact_id() AS txid \gset
COMMIT;
SELECT count(*) AS rows FROM at_prop;
SELECT prodguard.undo_transaction(:'txid') AS undone;
SELECT (SELECT count(*) FROM at_prop) AS rows,
       NOT EXISTS (SELECT p::text FROM at_prop p EXCEPT ALL SELECT s::text FROM at_prop_snapshot s)
   AND NOT EXISTS (SELECT s::text FROM at_prop_snapshot s EXCEPT ALL SELECT p::text FROM at_prop p)
       AS identical,
       (SELECT count(*) FROM at_differences('at_prop', 'at_prop_snapshot')) AS differences;

-- Round 2: the same rows changed several times in one transaction: updated twice, a key
-- changed, deleted and inserted again, inserted and then updated.
BEGIN;
UPDATE at_prop p SET (n, f8, t, j, b) = (SELECT r.n, r.f8, r.t, r.j, r.b FROM at_random_row(p.id) r)
 WHERE id % 3 = 0;
UPDATE at_prop SET n = n * 2, t = 'second change' WHERE id % 6 = 0;
UPDATE at_prop SET id = id + 10000 WHERE id % 9 = 0;
DELETE FROM at_prop WHERE id % 5 = 1;
INSERT INTO at_prop SELECT r.* FROM generate_series(1, 200) g, LATERAL at_random_row(g) r WHERE g % 5 = 1;
INSERT INTO at_prop SELECT r.* FROM generate_series(2001, 2020) g, LATERAL at_random_row(g) r;
UPDATE at_prop SET f8 = -f8 WHERE id > 2010;
SELECT pg_current_xact_id() AS txid \gset
COMMIT;
SELECT prodguard.undo_transaction(:'txid') > 0 AS undone;
SELECT (SELECT count(*) FROM at_prop) AS rows,
       NOT EXISTS (SELECT p::text FROM at_prop p EXCEPT ALL SELECT s::text FROM at_prop_snapshot s)
   AND NOT EXISTS (SELECT s::text FROM at_prop_snapshot s EXCEPT ALL SELECT p::text FROM at_prop p)
       AS identical;
