#!/usr/bin/env bash
# Static checks of deploy/ and docker-compose.yml (run by scripts/test.sh):
# promtool on the Prometheus config and rules (with the rules' unit tests),
# amtool on the Alertmanager config, docker-compose on the compose file, and
# the Grafana dashboard as JSON. Needs promtool, amtool and docker-compose.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml
echo "== promtool check rules / test rules"
promtool check rules deploy/prometheus/peakguard-rules.yml
(cd deploy/prometheus && promtool test rules peakguard-rules.test.yml)
echo "== amtool check-config deploy/alertmanager/alertmanager.yml"
amtool check-config deploy/alertmanager/alertmanager.yml
echo "== docker-compose config (static)"
docker-compose -f docker-compose.yml config -q
echo "== Grafana dashboard is JSON"
python3 -m json.tool deploy/grafana/dashboards/peakguard.json >/dev/null
echo "deploy/ checks passed"
