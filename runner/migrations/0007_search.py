"""Full-text search over runs' code and output (runner/selectors/search.py reads it).

SQLite: an FTS5 table `runner_search` kept by triggers, one row per run's code (rowid = 2 * execution
id + 1, kind `code`: the code and any error) and per output chunk with text (rowid = 2 * chunk id,
kind `output`; the first 20 chunks of a run, 16 KiB of each, so a flood of output costs little to
index), with the owner as a token (`u<id>`), so a user's search only ever matches their own rows.
Postgres: the same rows in a table with a stored tsvector (the unmanaged SearchEntry model),
searched with django.contrib.postgres.search.
Titles need no index: they are matched among the user's own sessions.
"""

import django.contrib.postgres.search
from django.db import migrations, models

# What is indexed of a run's output: its first OUTPUT_CHUNKS chunks, OUTPUT_CHARS characters of
# each, ANSI colour codes removed (runner/selectors/search.py filters and builds the same).
OUTPUT_CHUNKS = 20
OUTPUT_CHARS = 16384
# SQLite has no regexp_replace (and its parser allows ~20 nested calls), so colour codes are
# removed in steps: drop a leading "0;", "1;" or "01;", then a tens digit 2/3/4/9 (ESC[31m ->
# ESC[1m), then ESC[<digit>m; any other escape leaves at worst a stray token.
_SGR_STEPS = [("[01;", "["), ("[0;", "["), ("[1;", "["), ("[3", "["), ("[9", "["), ("[4", "["), ("[2", "[")]
_SGR_STEPS += [(f"[{digit}m", None) for digit in range(10)]


def _sqlite_output_text(column: str) -> str:
    text = f"substr({column}, 1, {OUTPUT_CHARS})"
    stripped = text
    for find, into in _SGR_STEPS:
        stripped = f"replace({stripped}, char(27) || '{find}', " + (f"char(27) || '{into}'" if into else "' '") + ")"
    return f"CASE WHEN instr({text}, char(27)) > 0 THEN replace({stripped}, char(27), ' ') ELSE {text} END"


def _sqlite_code_text(row: str) -> str:
    return f"{row}.code || char(10) || {row}.error_name || ' ' || {row}.error_value"


SQLITE_CREATE = [
    "CREATE VIRTUAL TABLE runner_search USING fts5(body, owner, kind, execution_id UNINDEXED, tokenize = 'unicode61')",
    f"""CREATE TRIGGER runner_search_code AFTER INSERT ON runner_execution BEGIN
        INSERT INTO runner_search(rowid, body, owner, kind, execution_id)
        SELECT NEW.id * 2 + 1, {_sqlite_code_text("NEW")}, 'u' || s.owner_id, 'code', NEW.id
        FROM runner_chatsession s WHERE s.id = NEW.session_id;
    END""",
    f"""CREATE TRIGGER runner_search_code_changed AFTER UPDATE OF code, error_name, error_value ON runner_execution
    WHEN NEW.code != OLD.code OR NEW.error_name != OLD.error_name OR NEW.error_value != OLD.error_value BEGIN
        DELETE FROM runner_search WHERE rowid = OLD.id * 2 + 1;
        INSERT INTO runner_search(rowid, body, owner, kind, execution_id)
        SELECT NEW.id * 2 + 1, {_sqlite_code_text("NEW")}, 'u' || s.owner_id, 'code', NEW.id
        FROM runner_chatsession s WHERE s.id = NEW.session_id;
    END""",
    f"""CREATE TRIGGER runner_search_output AFTER INSERT ON runner_outputchunk
    WHEN NEW."index" < {OUTPUT_CHUNKS} AND NEW.text != '' BEGIN
        INSERT INTO runner_search(rowid, body, owner, kind, execution_id)
        SELECT NEW.id * 2, {_sqlite_output_text("NEW.text")}, 'u' || s.owner_id, 'output', NEW.execution_id
        FROM runner_execution e JOIN runner_chatsession s ON s.id = e.session_id WHERE e.id = NEW.execution_id;
    END""",
    """CREATE TRIGGER runner_search_code_gone AFTER DELETE ON runner_execution BEGIN
        DELETE FROM runner_search WHERE rowid = OLD.id * 2 + 1;
    END""",
    f"""CREATE TRIGGER runner_search_output_gone AFTER DELETE ON runner_outputchunk WHEN OLD."index" < {OUTPUT_CHUNKS} BEGIN
        DELETE FROM runner_search WHERE rowid = OLD.id * 2;
    END""",
    f"""INSERT INTO runner_search(rowid, body, owner, kind, execution_id)
        SELECT e.id * 2 + 1, {_sqlite_code_text("e")}, 'u' || s.owner_id, 'code', e.id
        FROM runner_execution e JOIN runner_chatsession s ON s.id = e.session_id""",
    f"""INSERT INTO runner_search(rowid, body, owner, kind, execution_id)
        SELECT c.id * 2, {_sqlite_output_text("c.text")}, 'u' || s.owner_id, 'output', c.execution_id
        FROM runner_outputchunk c JOIN runner_execution e ON e.id = c.execution_id JOIN runner_chatsession s ON s.id = e.session_id
        WHERE c."index" < {OUTPUT_CHUNKS} AND c.text != ''""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS runner_search_code",
    "DROP TRIGGER IF EXISTS runner_search_code_changed",
    "DROP TRIGGER IF EXISTS runner_search_output",
    "DROP TRIGGER IF EXISTS runner_search_code_gone",
    "DROP TRIGGER IF EXISTS runner_search_output_gone",
    "DROP TABLE IF EXISTS runner_search",
]
# Postgres: the same rows in a plain table with a stored tsvector, kept by triggers, read through
# the unmanaged SearchEntry model with django.contrib.postgres.search. A btree on (owner, kind, id)
# lets a common word stop at the user's newest rows; the GIN index finds a rare one. Inserts and
# deletes are indexed per statement (one INSERT ... SELECT over the statement's new rows), so a
# batch of output costs one statement, not one trigger call per chunk.
def _pg_code_rows(source: str) -> str:
    """Index the runs in `source` (a table or transition table with runner_execution's columns)."""
    return f"""INSERT INTO runner_search (id, owner_id, is_code, execution_id, body, doc)
        SELECT e.id * 2 + 1, s.owner_id, true, e.id, b.body, to_tsvector('simple'::regconfig, replace(b.body, '<', ' '))
        FROM {source} e JOIN runner_chatsession s ON s.id = e.session_id,
             LATERAL (SELECT e.code || E'\\n' || e.error_name || ' ' || e.error_value AS body) b"""


def _pg_output_rows(source: str) -> str:
    """Index the output chunks in `source` ("<" is a blank for the tsvector: Postgres's parser would
    otherwise read "<b>word</b>" as tags)."""
    return f"""INSERT INTO runner_search (id, owner_id, is_code, execution_id, body, doc)
        SELECT c.id * 2, s.owner_id, false, c.execution_id, b.body, to_tsvector('simple'::regconfig, replace(b.body, '<', ' '))
        FROM {source} c JOIN runner_execution e ON e.id = c.execution_id JOIN runner_chatsession s ON s.id = e.session_id,
             LATERAL (SELECT regexp_replace(left(c.text, {OUTPUT_CHARS}), '\\x1b\\[[0-9;?]*[A-Za-z]', ' ', 'g') AS body) b
        WHERE c.index < {OUTPUT_CHUNKS} AND c.text != ''"""


def _pg_statement_trigger(name: str, table: str, event: str, transition: str, body: str) -> list[str]:
    return [
        f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            {body};
            RETURN NULL;
        END $$""",
        f"""CREATE TRIGGER {name} AFTER {event} ON {table}
            {f"REFERENCING {transition}" if transition else ""} FOR EACH STATEMENT EXECUTE FUNCTION {name}()""",
    ]


POSTGRES_CREATE = [
    """CREATE TABLE runner_search (
        id bigint PRIMARY KEY, owner_id integer NOT NULL, is_code boolean NOT NULL, execution_id bigint NOT NULL,
        body text NOT NULL, doc tsvector NOT NULL)""",
    "CREATE INDEX runner_search_doc ON runner_search USING gin (doc)",
    "CREATE INDEX runner_search_owner_newest ON runner_search (owner_id, is_code, id DESC)",
    *_pg_statement_trigger("runner_search_code_added", "runner_execution", "INSERT", "NEW TABLE AS added",
                           _pg_code_rows("added")),
    *_pg_statement_trigger("runner_search_code_gone", "runner_execution", "DELETE", "OLD TABLE AS gone",
                           "DELETE FROM runner_search WHERE id IN (SELECT id * 2 + 1 FROM gone)"),
    *_pg_statement_trigger("runner_search_output_added", "runner_outputchunk", "INSERT", "NEW TABLE AS added",
                           _pg_output_rows("added")),
    *_pg_statement_trigger("runner_search_output_gone", "runner_outputchunk", "DELETE", "OLD TABLE AS gone",
                           "DELETE FROM runner_search WHERE id IN (SELECT id * 2 FROM gone)"),
    # A run's error arrives with its end (one row at a time): re-index that run's code row.
    f"""CREATE FUNCTION runner_search_code_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM runner_search WHERE id = NEW.id * 2 + 1;
        {_pg_code_rows("(SELECT NEW.id AS id, NEW.session_id AS session_id, NEW.code AS code, NEW.error_name AS error_name, NEW.error_value AS error_value)")};
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER runner_search_code_changed AFTER UPDATE OF code, error_name, error_value ON runner_execution
        FOR EACH ROW WHEN (OLD.code IS DISTINCT FROM NEW.code OR OLD.error_name IS DISTINCT FROM NEW.error_name
                           OR OLD.error_value IS DISTINCT FROM NEW.error_value)
        EXECUTE FUNCTION runner_search_code_changed()""",
    # TRUNCATE (a test database's flush) fires no row triggers: empty the search table with it.
    *_pg_statement_trigger("runner_search_truncate", "runner_execution", "TRUNCATE", "", "TRUNCATE runner_search"),
    _pg_code_rows("runner_execution"),
    _pg_output_rows("runner_outputchunk"),
]
_PG_TRIGGERS = [("runner_search_code_added", "runner_execution"), ("runner_search_code_gone", "runner_execution"),
                ("runner_search_output_added", "runner_outputchunk"), ("runner_search_output_gone", "runner_outputchunk"),
                ("runner_search_code_changed", "runner_execution"), ("runner_search_truncate", "runner_execution")]
POSTGRES_DROP = [
    *[f"DROP TRIGGER IF EXISTS {name} ON {table}" for name, table in _PG_TRIGGERS],
    *[f"DROP FUNCTION IF EXISTS {name}()" for name, _ in _PG_TRIGGERS],
    "DROP TABLE IF EXISTS runner_search",
]


def _run(statements_by_vendor: dict[str, list[str]]):
    def apply(apps, schema_editor) -> None:
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):

    dependencies = [
        ("runner", "0006_api_keys"),
    ]

    operations = [
        migrations.CreateModel(
            name="SearchEntry",
            fields=[
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("owner_id", models.IntegerField()),
                ("is_code", models.BooleanField()),
                ("execution_id", models.BigIntegerField()),
                ("body", models.TextField()),
                ("doc", django.contrib.postgres.search.SearchVectorField()),
            ],
            options={"db_table": "runner_search", "managed": False},
        ),
        migrations.RunPython(
            _run({"sqlite": SQLITE_CREATE, "postgresql": POSTGRES_CREATE}),
            _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}),
        ),
    ]
