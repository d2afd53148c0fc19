-- pg_prodguard: the test-data guard's dictionaries (SPEC §5) and the built-in ones.

CREATE TABLE prodguard.dictionary (
    name        text PRIMARY KEY,
    description text,
    enabled     boolean NOT NULL DEFAULT true,
    builtin     boolean NOT NULL DEFAULT false
);
CREATE TABLE prodguard.dictionary_entry (
    dictionary text NOT NULL REFERENCES prodguard.dictionary ON DELETE CASCADE,
    pattern    text NOT NULL CHECK (length(pattern) BETWEEN 1 AND 1000),
    match      text NOT NULL DEFAULT 'word' CHECK (match IN ('word', 'substring')),
    PRIMARY KEY (dictionary, pattern)
);
REVOKE ALL ON prodguard.dictionary, prodguard.dictionary_entry FROM PUBLIC;
GRANT SELECT ON prodguard.dictionary, prodguard.dictionary_entry TO prodguard_operator, prodguard_auditor;
-- User dictionaries are dumped with the database; the built-in ones come with the extension.
SELECT pg_catalog.pg_extension_config_dump('prodguard.dictionary', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('prodguard.dictionary_entry',
    'WHERE dictionary IN (SELECT name FROM prodguard.dictionary WHERE NOT builtin)');

COMMENT ON TABLE prodguard.dictionary IS
    'pg_prodguard: dictionaries of known test data; change them with prodguard.dictionary_add(), dictionary_remove() and dictionary_enable().';
COMMENT ON COLUMN prodguard.dictionary.name IS 'Dictionary name.';
COMMENT ON COLUMN prodguard.dictionary.description IS 'What the dictionary holds and where its patterns come from.';
COMMENT ON COLUMN prodguard.dictionary.enabled IS 'Whether the guard uses it.';
COMMENT ON COLUMN prodguard.dictionary.builtin IS 'Shipped with pg_prodguard (not dumped with the database).';
COMMENT ON TABLE prodguard.dictionary_entry IS 'pg_prodguard: the patterns of each dictionary.';
COMMENT ON COLUMN prodguard.dictionary_entry.dictionary IS 'The dictionary the pattern belongs to.';
COMMENT ON COLUMN prodguard.dictionary_entry.pattern IS 'Text to find, compared case-insensitively (Unicode case folding).';
COMMENT ON COLUMN prodguard.dictionary_entry.match IS
    'word: not inside a longer run of letters or digits (a pattern starting with "." is a domain suffix that ends a host name); substring: anywhere.';

-- The dictionaries' generation: set from its sequence by every change to them; names the
-- compiled matcher that the server's backends share ($PGDATA/pg_prodguard/).
CREATE TABLE prodguard.dictionary_generation (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    generation bigint GENERATED ALWAYS AS IDENTITY
);
INSERT INTO prodguard.dictionary_generation DEFAULT VALUES;
REVOKE ALL ON prodguard.dictionary_generation FROM PUBLIC;
COMMENT ON TABLE prodguard.dictionary_generation IS
    'pg_prodguard: the dictionaries'' generation (internal): moved on by every change to them; names the compiled matcher the server''s sessions share.';
COMMENT ON SEQUENCE prodguard.dictionary_generation_generation_seq IS
    'pg_prodguard: hands out the dictionaries'' generations (internal); a value once committed is never handed out again.';

-- Every committed change to the dictionaries makes every session rebuild its matcher at
-- its next statement.
CREATE TRIGGER dictionary_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON prodguard.dictionary FOR EACH STATEMENT EXECUTE FUNCTION prodguard.dictionaries_changed();
CREATE TRIGGER dictionary_entry_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON prodguard.dictionary_entry FOR EACH STATEMENT EXECUTE FUNCTION prodguard.dictionaries_changed();
-- (also under session_replication_role = replica: a replicated or restored change must
-- move the generation on too)
ALTER TABLE prodguard.dictionary ENABLE ALWAYS TRIGGER dictionary_changed;
ALTER TABLE prodguard.dictionary_entry ENABLE ALWAYS TRIGGER dictionary_entry_changed;

CREATE FUNCTION prodguard.dictionary_add(dictionary text, patterns text[], "match" text DEFAULT 'word')
RETURNS integer LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pg_temp
AS 'SELECT prodguard._dictionary_add($1, $2, $3)';
COMMENT ON FUNCTION prodguard.dictionary_add(text, text[], text) IS
    'Add patterns to a dictionary (created if needed); returns how many were new. Members of prodguard_operator only.';
COMMENT ON FUNCTION prodguard._dictionary_add(text, text[], text) IS 'Internal: the body of prodguard.dictionary_add().';
COMMENT ON FUNCTION prodguard.dictionary_remove(text, text[]) IS
    'Remove patterns from a dictionary; returns how many were removed. In production this needs an override.';
COMMENT ON FUNCTION prodguard.dictionary_enable(text, boolean) IS
    'Enable or disable a dictionary; disabling needs an override in production.';
COMMENT ON FUNCTION prodguard.dictionaries_changed() IS
    'Internal: statement trigger that makes every session rebuild its matcher after a dictionary change.';
COMMENT ON FUNCTION prodguard.test_data_trigger() IS
    'Internal: BEFORE INSERT OR UPDATE row trigger that prodguard.protect(test_data => true) installs.';
COMMENT ON FUNCTION prodguard.scan(text) IS
    'What the test-data guard finds in a value: dictionary, pattern, and the positions of the first and last character (members of prodguard_operator; at most 1,000 rows).';
-- scan() tells which patterns a dictionary holds (private ones included): for operators.
REVOKE ALL ON FUNCTION prodguard.scan(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prodguard.scan(text) TO prodguard_operator;
-- scan_table() tells the same of any value put into a table of one's own: for operators
-- and auditors.
REVOKE ALL ON FUNCTION prodguard.scan_table(regclass, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prodguard.scan_table(regclass, bigint) TO prodguard_operator, prodguard_auditor;
COMMENT ON FUNCTION prodguard.scan_table(regclass, bigint) IS
    'Existing rows of a table that carry test data (ctid, column, dictionary, pattern), read in batches.';

-- ---------------------------------------------------------------------------------------
-- Built-in dictionaries. Each is curated from a published source (see README) and kept
-- narrow, so that it does not fire on real data.

INSERT INTO prodguard.dictionary (name, description, builtin) VALUES
 ('reserved_domains',
  'Domain names reserved for examples and tests: example.com/.net/.org (RFC 2606, RFC 6761) and the .test, .example, .invalid and .localhost top-level domains (RFC 2606, RFC 6761).', true),
 ('test_cards',
  'Payment card numbers published by processors for testing (Stripe, Braintree/PayPal, Adyen), with and without spaces or dashes.', true),
 ('fictional_phones',
  'Telephone numbers reserved for fiction: NANP 555-0100 to 555-0199 (NANPA), and Ofcom''s drama ranges 07700 900000-900999 and 020 7946 0000-0999.', true),
 ('placeholder_people',
  'Names used as placeholders and in fixtures: John Doe, Jane Doe, Joe Bloggs, Max Mustermann, Test User, ...', true),
 ('lorem_ipsum',
  'Lorem ipsum filler text.', true);

INSERT INTO prodguard.dictionary_entry (dictionary, pattern) VALUES
 ('reserved_domains', 'example.com'), ('reserved_domains', 'example.net'),
 ('reserved_domains', 'example.org'), ('reserved_domains', '.test'),
 ('reserved_domains', '.example'), ('reserved_domains', '.invalid'),
 ('reserved_domains', '.localhost');

WITH cards(n) AS (VALUES
    -- Visa
    ('4242424242424242'), ('4000056655665556'), ('4111111111111111'), ('4012888888881881'),
    ('4005519200000004'), ('4009348888881881'), ('4012000033330026'), ('4012000077777777'),
    ('4217651111111119'), ('4500600000000061'), ('4988438843884305'),
    -- Mastercard
    ('5555555555554444'), ('2223003122003222'), ('5200828282828210'), ('5105105105105100'),
    ('2223000048400011'), ('5555341244441115'),
    -- American Express
    ('378282246310005'), ('371449635398431'), ('378734493671000'), ('370000000000002'),
    -- Discover
    ('6011111111111117'), ('6011000990139424'), ('6011981111111113'), ('6011601160116611'),
    -- Diners Club
    ('3056930009020004'), ('36227206271667'),
    -- JCB, UnionPay
    ('3566002020360505'), ('3530111333300000'), ('6200000000000005')),
groups AS (
    SELECT n, CASE length(n)
        WHEN 16 THEN ARRAY[substr(n, 1, 4), substr(n, 5, 4), substr(n, 9, 4), substr(n, 13, 4)]
        WHEN 15 THEN ARRAY[substr(n, 1, 4), substr(n, 5, 6), substr(n, 11, 5)]
        WHEN 14 THEN ARRAY[substr(n, 1, 4), substr(n, 5, 6), substr(n, 11, 4)]
    END AS g
    FROM cards)
INSERT INTO prodguard.dictionary_entry (dictionary, pattern)
SELECT DISTINCT 'test_cards', p
  FROM groups, LATERAL (VALUES (n), (array_to_string(g, ' ')), (array_to_string(g, '-'))) v(p);

-- NANP 555-0100..555-0199 in the usual spellings; Ofcom drama numbers national and +44.
INSERT INTO prodguard.dictionary_entry (dictionary, pattern)
SELECT DISTINCT 'fictional_phones', p
  FROM generate_series(100, 199) n,
       LATERAL (VALUES ('555-0' || n), ('555 0' || n), ('555.0' || n)) v(p)
UNION
SELECT 'fictional_phones', p
  FROM generate_series(0, 999) n, LATERAL (SELECT lpad(n::text, 3, '0') AS x) x,
       LATERAL (VALUES ('07700 900' || x), ('07700900' || x), ('+44 7700 900' || x),
                       ('+447700900' || x), ('020 7946 0' || x), ('02079460' || x),
                       ('+44 20 7946 0' || x), ('+442079460' || x)) v(p);

INSERT INTO prodguard.dictionary_entry (dictionary, pattern)
SELECT 'placeholder_people', p FROM unnest(ARRAY[
    'John Doe', 'Jane Doe', 'Johnny Doe', 'Janie Doe', 'Richard Roe', 'John Q. Public',
    'Joe Bloggs', 'Jane Bloggs', 'Fred Nurk', 'Max Mustermann', 'Erika Mustermann',
    'Otto Normalverbraucher', 'Test User', 'Test Testerson', 'Testy McTestface',
    'Test Customer', 'Demo User', 'Dummy User', 'Sample User', 'Foo Bar', 'Asdf Asdf'
]) p;

INSERT INTO prodguard.dictionary_entry (dictionary, pattern)
SELECT 'lorem_ipsum', p FROM unnest(ARRAY[
    'lorem ipsum', 'dolor sit amet', 'consectetur adipiscing elit', 'adipisicing elit',
    'sed do eiusmod tempor', 'incididunt ut labore', 'ut enim ad minim veniam',
    'quis nostrud exercitation', 'duis aute irure dolor', 'excepteur sint occaecat'
]) p;
