# Sourced by .ci/run before pytest: a real PostgreSQL server on loopback for the study tests
# (several `arsearch study run` workers sharing one Optuna storage). Idempotent: installs
# PostgreSQL with apt-get only when missing, starts the newest cluster if it is down, creates
# the role and database once, and exports ARSEARCH_TEST_POSTGRES for tests/test_study_workers.py.
arsearch_postgres() {
    local as_root="" ver port
    [ "$(id -u)" = 0 ] || as_root="sudo"
    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        $as_root apt-get update -qq || return 1
        DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq postgresql >/dev/null || return 1
    fi
    ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
    if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$ver main"; then
        $as_root pg_createcluster "$ver" main >/dev/null || return 1
    fi
    if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main"{print $4}' | grep -q online; then
        $as_root pg_ctlcluster "$ver" main start || return 1
    fi
    port=$(pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main"{print $3}')
    local psql="$as_root su postgres -c"
    if ! $psql "psql -p $port -tAc \"SELECT 1 FROM pg_roles WHERE rolname='arsearch'\"" | grep -q 1; then
        $psql "psql -p $port -qc \"CREATE ROLE arsearch LOGIN PASSWORD 'arsearch'\"" || return 1
    fi
    if ! $psql "psql -p $port -tAc \"SELECT 1 FROM pg_database WHERE datname='arsearch_test'\"" | grep -q 1; then
        $psql "createdb -p $port -O arsearch arsearch_test" || return 1
    fi
    export ARSEARCH_TEST_POSTGRES="postgresql://arsearch:arsearch@127.0.0.1:$port/arsearch_test"
    echo "PostgreSQL $ver on 127.0.0.1:$port: ARSEARCH_TEST_POSTGRES=$ARSEARCH_TEST_POSTGRES"
}
arsearch_postgres || echo "warning: PostgreSQL could not be set up; the PostgreSQL study test will fail" >&2
unset -f arsearch_postgres
