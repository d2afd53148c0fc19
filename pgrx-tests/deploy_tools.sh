#!/usr/bin/env bash
# Real migration tools against a production database guarded by pg_prodguard: Django
# (manage.py migrate), alembic (upgrade head) and knex (migrate:latest), installed from
# their package registries into target/tools. Each tool:
#   1. migrates a fresh production database unmodified: creating tables, then dropping
#      columns of tables that hold no rows yet, and knex's lock release (an UPDATE without
#      WHERE of its lock table) are not refused;
#   2. is refused when a migration would drop a populated column, with pg_prodguard's
#      message in the tool's own error output;
#   3. runs that same migration unmodified once one operator has requested and another has
#      approved a change for the tool's role, passed as PGOPTIONS='-c
#      prodguard.override=change:<id>'; the change's statements are counted in
#      prodguard.changes.
# Run by bin/test; on its own: pgrx-tests/deploy_tools.sh (the extension must be installed).
source "$(dirname "$0")/../bin/common.sh"

tools="$PROJECT_DIR/target/tools"
mkdir -p "$tools"
python_tools
# a machine without npm gets it from Debian
command -v npm >/dev/null ||
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null
if [ ! -d "$tools/node/node_modules/knex" ]; then
    say "installing knex and pg from npm into $tools/node"
    mkdir -p "$tools/node"
    (cd "$tools/node" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund knex@3 pg@8 >/dev/null)
fi

port=$(free_port 54380)
start_cluster deploy "$port" "shared_preload_libraries = 'pg_prodguard'"
trap 'stop_cluster deploy' EXIT
export PGHOST=127.0.0.1
psql -X -q -d postgres <<'SQL'
CREATE ROLE django LOGIN PASSWORD 'django';
CREATE ROLE alembic LOGIN PASSWORD 'alembic';
CREATE ROLE knex LOGIN PASSWORD 'knex';
CREATE DATABASE shop_django OWNER django;
CREATE DATABASE shop_alembic OWNER alembic;
CREATE DATABASE shop_knex OWNER knex;
SQL
for db in shop_django shop_alembic shop_knex; do
    psql -X -q -d "$db" -c "CREATE EXTENSION pg_prodguard"
done
# (CREATE EXTENSION made the role prodguard_operator)
psql -X -q -d postgres -c "CREATE ROLE ops1 LOGIN IN ROLE prodguard_operator" \
    -c "CREATE ROLE ops2 LOGIN IN ROLE prodguard_operator"
# shows TEXT: how many lines of the tool's output hold it, at least one
shows() { [ "$(echo "$1" | grep -cF "$2")" -ge 1 ] && echo yes || echo no; }
q() { psql -X -q -t -A -d "$1" -c "$2"; }

# approve ROLE DATABASE REASON: ops1 requests, ops2 approves; prints the change id
approve() {
    local id
    id=$(psql -X -q -t -A -U ops1 -d "$2" -c "SELECT prodguard.request_change('$3', '$1', '30 minutes')")
    psql -X -q -U ops2 -d "$2" -c "SELECT prodguard.approve_change($id)" >/dev/null
    echo "$id"
}

# ---------------------------------------------------------------------------------------
say "Django: manage.py migrate"
dj="$tools/django_project"
rm -rf "$dj" && mkdir -p "$dj/inventory/migrations"
cat >"$dj/settings.py" <<EOF
SECRET_KEY = "test"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "inventory"]
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "shop_django",
    "USER": "django", "PASSWORD": "django", "HOST": "127.0.0.1", "PORT": "$port"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
EOF
cat >"$dj/manage.py" <<'EOF'
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
EOF
touch "$dj/inventory/__init__.py" "$dj/inventory/migrations/__init__.py"
cat >"$dj/inventory/models.py" <<'EOF'
from django.db import models
class Product(models.Model):
    name = models.CharField(max_length=200)
EOF
cat >"$dj/inventory/migrations/0001_initial.py" <<'EOF'
from django.db import migrations, models
class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [migrations.CreateModel(name="Product", fields=[
        ("id", models.BigAutoField(primary_key=True, serialize=False)),
        ("name", models.CharField(max_length=200)),
        ("legacy_code", models.CharField(max_length=20, null=True))])]
EOF
djm() { (cd "$dj" && "$tools/venv/bin/python" manage.py migrate "$@" 2>&1); }
out=$(djm) && status=0 || status=$?
check "Django: the first migrate of a fresh production database runs" "$status" 0
[ "$status" -eq 0 ] || echo "$out" | tail -20
q shop_django "INSERT INTO inventory_product (name, legacy_code) VALUES ('Rye bread', 'RB-1'), ('Still water 2L', 'SW-2')"
cat >"$dj/inventory/migrations/0002_remove_product_legacy_code.py" <<'EOF'
from django.db import migrations
class Migration(migrations.Migration):
    dependencies = [("inventory", "0001_initial")]
    operations = [migrations.RemoveField(model_name="product", name="legacy_code")]
EOF
out=$(djm) && status=0 || status=$?
check "Django: dropping a populated column is refused" "$status" 1
check "Django: the tool shows pg_prodguard's message" \
    "$(shows "$out" 'ALTER TABLE DROP COLUMN of column "legacy_code" of table "public.inventory_product" is blocked in production database "shop_django"')" yes
id=$(approve django shop_django "CHG-101: drop inventory_product.legacy_code")
out=$(PGOPTIONS="-c prodguard.override=change:$id" djm) && status=0 || status=$?
check "Django: with an approved change the same migrate runs" "$status" 0
[ "$status" -eq 0 ] || echo "$out" | tail -20
check "Django: the column is gone, the rows kept" \
    "$(q shop_django "SELECT count(*) FROM inventory_product")/$(q shop_django "SELECT count(*) FROM information_schema.columns WHERE table_name = 'inventory_product' AND column_name = 'legacy_code'")" "2/0"
check "Django: the change counts its statement" "$(q shop_django "SELECT statements FROM prodguard.changes WHERE id = $id")" 1
check "Django: django_migrations is protected" \
    "$(q shop_django "SELECT forbid_delete FROM prodguard.protected_tables WHERE table_name = 'django_migrations'::regclass")" t

# ---------------------------------------------------------------------------------------
say "alembic: upgrade head"
al="$tools/alembic_project"
rm -rf "$al" && mkdir -p "$al/versions"
cat >"$al/alembic.ini" <<EOF
[alembic]
script_location = $al
sqlalchemy.url = postgresql+psycopg://alembic:alembic@127.0.0.1:$port/shop_alembic
EOF
cat >"$al/env.py" <<'EOF'
from alembic import context
from sqlalchemy import engine_from_config, pool
config = context.config
engine = engine_from_config(config.get_section(config.config_ini_section), prefix="sqlalchemy.", poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
EOF
cat >"$al/script.py.mako" <<'EOF'
EOF
cat >"$al/versions/001_items.py" <<'EOF'
import sqlalchemy as sa
from alembic import op
revision = "001"
down_revision = None
def upgrade():
    op.create_table("item", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("sku", sa.String(20)), sa.Column("scratch", sa.Text),
                    sa.Column("note", sa.Text))
    op.drop_column("item", "scratch")
EOF
alm() { "$tools/venv/bin/alembic" -c "$al/alembic.ini" upgrade head 2>&1; }
out=$(alm) && status=0 || status=$?
check "alembic: the first upgrade of a fresh production database runs" "$status" 0
[ "$status" -eq 0 ] || echo "$out" | tail -20
q shop_alembic "INSERT INTO item (sku, note) VALUES ('SKU-1', 'fragile'), ('SKU-2', NULL)"
cat >"$al/versions/002_drop_note.py" <<'EOF'
from alembic import op
revision = "002"
down_revision = "001"
def upgrade():
    op.drop_column("item", "note")
EOF
out=$(alm) && status=0 || status=$?
check "alembic: dropping a populated column is refused" "$status" 1
check "alembic: the tool shows pg_prodguard's message" \
    "$(shows "$out" 'ALTER TABLE DROP COLUMN of column "note" of table "public.item" is blocked in production database "shop_alembic"')" yes
id=$(approve alembic shop_alembic "CHG-102: drop item.note")
out=$(PGOPTIONS="-c prodguard.override=change:$id" alm) && status=0 || status=$?
check "alembic: with an approved change the same upgrade runs" "$status" 0
[ "$status" -eq 0 ] || echo "$out" | tail -20
check "alembic: version 002, rows kept" \
    "$(q shop_alembic "SELECT version_num FROM alembic_version")/$(q shop_alembic "SELECT count(*) FROM item")" "002/2"

# ---------------------------------------------------------------------------------------
say "knex: migrate:latest"
kx="$tools/node/project"
rm -rf "$kx" && mkdir -p "$kx/migrations"
cat >"$kx/knexfile.js" <<EOF
module.exports = { client: "pg", connection: { host: "127.0.0.1", port: $port,
    user: "knex", password: "knex", database: "shop_knex" }, migrations: { directory: "$kx/migrations" } };
EOF
cat >"$kx/migrations/20261201000000_orders.js" <<'EOF'
exports.up = async (knex) => {
  await knex.schema.createTable("orders", (t) => { t.increments("id"); t.string("item"); t.string("coupon"); });
};
exports.down = async (knex) => { await knex.schema.dropTable("orders"); };
EOF
kxm() { (cd "$tools/node" && NODE_PATH="$tools/node/node_modules" node node_modules/knex/bin/cli.js --knexfile "$kx/knexfile.js" migrate:latest 2>&1); }
out=$(kxm) && status=0 || status=$?
check "knex: the first migrate:latest (its lock released by UPDATE without WHERE) runs" "$status" 0
[ "$status" -eq 0 ] || echo "$out" | tail -20
q shop_knex "INSERT INTO orders (item, coupon) VALUES ('Rye bread', 'WELCOME')"
cat >"$kx/migrations/20261201000100_drop_coupon.js" <<'EOF'
exports.up = async (knex) => { await knex.schema.alterTable("orders", (t) => { t.dropColumn("coupon"); }); };
exports.down = async () => {};
EOF
out=$(kxm) && status=0 || status=$?
check "knex: dropping a populated column is refused" "$((status != 0))" 1
check "knex: the tool shows pg_prodguard's message" \
    "$(shows "$out" 'ALTER TABLE DROP COLUMN of column "coupon" of table "public.orders" is blocked in production database "shop_knex"')" yes
check "knex: the lock was released after the failure" "$(q shop_knex "SELECT is_locked FROM knex_migrations_lock")" 0
id=$(approve knex shop_knex "CHG-103: drop orders.coupon")
out=$(PGOPTIONS="-c prodguard.override=change:$id" kxm) && status=0 || status=$?
check "knex: with an approved change the same migrate:latest runs" "$status" 0
[ "$status" -eq 0 ] || echo "$out" | tail -20
check "knex: both migrations recorded, rows kept" \
    "$(q shop_knex "SELECT count(*) FROM knex_migrations")/$(q shop_knex "SELECT count(*) FROM orders")" "2/1"

[ "$failures" -eq 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
say "deploy tools: all checks passed"
