#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft, broker+controller in one JVM) without Docker.
#
#   kafka.sh fetch                      resolve the Kafka jars from Maven Central into the cache
#   kafka.sh start  [--port N] [--dir D] format storage (first time) and start; waits until ready
#   kafka.sh stop   [--dir D]           stop the broker started from D; leaves nothing running
#   kafka.sh status [--dir D]           exit 0 and print the bootstrap address if it runs
#
# Secured listeners, beside the PLAINTEXT one (which the broker itself uses), for tests of
# clients on a cluster set up as production ones are:
#   --sasl-port N --scram-user U --scram-password-file F
#                                       a SASL_PLAINTEXT listener (SCRAM-SHA-512); the user is
#                                       created when the storage is formatted (--add-scram)
#   --ssl-port N --ssl-keystore PEM     a SASL_SSL listener too; PEM holds the broker's private
#                                       key (PKCS#8, unencrypted) and its certificate chain
#
# The jars live in $CAYG_CACHE_DIR (default ~/.cache/cayg-sync), never in the repository.
# State, config and the broker log live in --dir (default $CAYG_CACHE_DIR/kafka-run-<port>).
# Starting twice is harmless: a broker already running from the same dir is reused.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
cache=${CAYG_CACHE_DIR:-$HOME/.cache/cayg-sync}
lib="$cache/kafka-$kafka_version/lib"
port=${KAFKA_PORT:-9092}
dir=""
sasl_port=""
ssl_port=""
scram_user=""
scram_password_file=""
ssl_keystore=""
java_bin=${JAVA_HOME:+$JAVA_HOME/bin/}java

die() { echo "kafka.sh: $*" >&2; exit 1; }

cmd=${1:-}
[ -n "$cmd" ] || die "usage: kafka.sh fetch|start|stop|status [--port N] [--dir D]"
shift
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --sasl-port) sasl_port=$2; shift 2 ;;
    --ssl-port) ssl_port=$2; shift 2 ;;
    --scram-user) scram_user=$2; shift 2 ;;
    --scram-password-file) scram_password_file=$2; shift 2 ;;
    --ssl-keystore) ssl_keystore=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
[ -n "$dir" ] || dir="$cache/kafka-run-$port"

fetch() {
  if [ -f "$lib/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Kafka jars"
  echo "kafka.sh: resolving Apache Kafka $kafka_version from Maven Central into $lib" >&2
  rm -rf "$lib"
  mkdir -p "$lib"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$lib" -DincludeScope=runtime >&2
  # Two SLF4J APIs would make the broker log nothing; keep only the 2.x one the binding needs.
  find "$lib" -name 'slf4j-api-1.*.jar' -delete
  touch "$lib/.complete"
}

pid_alive() { [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  fetch
  mkdir -p "$dir/data"
  if pid_alive; then
    echo "127.0.0.1:$(cat "$dir/port")"
    return 0
  fi
  if port_open "$port"; then die "port $port is already taken by another process"; fi
  local controller_port=$((port + 1))
  [ "$controller_port" -le 65535 ] || die "port $port leaves no room for the controller port"
  if port_open "$controller_port"; then die "controller port $controller_port is taken"; fi
  local listeners="PLAINTEXT://127.0.0.1:$port"
  local secured=""
  local scram=()
  if [ -n "$sasl_port" ]; then
    [ -n "$scram_user" ] && [ -f "$scram_password_file" ] \
      || die "--sasl-port needs --scram-user and a readable --scram-password-file"
    listeners="$listeners,SASL_PLAINTEXT://127.0.0.1:$sasl_port"
    scram=(--add-scram "SCRAM-SHA-512=[name=$scram_user,password=$(tr -d '\n' <"$scram_password_file")]")
    secured="sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
  fi
  if [ -n "$ssl_port" ]; then
    [ -n "$sasl_port" ] || die "--ssl-port needs --sasl-port (the listener is SASL_SSL)"
    [ -f "$ssl_keystore" ] || die "--ssl-port needs a readable --ssl-keystore"
    listeners="$listeners,SASL_SSL://127.0.0.1:$ssl_port"
    secured="$secured
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$ssl_keystore"
  fi
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=$listeners,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
$secured
log.dirs=$dir/data
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=4194304
replica.fetch.max.bytes=4194304
log.retention.hours=24
EOF
  local jvm=(-Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$here/log4j2.properties" "-Dkafka.logs.file=$dir/broker.log")
  if [ ! -f "$dir/data/meta.properties" ]; then
    "$java_bin" "${jvm[@]}" -cp "$lib/*" kafka.tools.StorageTool format --standalone \
      -t "$("$java_bin" -cp "$lib/*" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
      -c "$dir/server.properties" "${scram[@]}" >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "storage format failed"; }
  fi
  echo "$port" >"$dir/port"
  nohup "$java_bin" "${jvm[@]}" -cp "$lib/*" kafka.Kafka "$dir/server.properties" \
    >"$dir/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/broker.pid"
  # Ready = the broker answers on its port and has logged that it finished starting.
  for _ in $(seq 1 240); do
    if ! pid_alive; then
      tail -n 40 "$dir/stdout.log" "$dir/broker.log" >&2 2>/dev/null || true
      die "broker exited during start-up (logs in $dir)"
    fi
    if port_open "$port" && grep -q "Kafka Server started\|\[KafkaRaftServer nodeId=1\] Kafka Server started" "$dir/broker.log" 2>/dev/null; then
      echo "127.0.0.1:$port"
      return 0
    fi
    sleep 0.5
  done
  stop
  die "broker did not become ready in 120 s (logs in $dir)"
}

stop() {
  if ! pid_alive; then rm -f "$dir/broker.pid"; return 0; fi
  local pid
  pid=$(cat "$dir/broker.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$dir/broker.pid"; return 0; }
    sleep 0.5
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$dir/broker.pid"
}

case "$cmd" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) if pid_alive; then echo "127.0.0.1:$(cat "$dir/port")"; else exit 1; fi ;;
  *) die "unknown command $cmd" ;;
esac
