// Validates the prometheus-operator resources (ServiceMonitor, PodMonitor) in rendered
// manifests against the operator's CRD schemas, which kubernetes-validate does not ship.
// Usage: node monitors.mjs FILE... (run from a directory where `npm install
// @kubernetes-models/prometheus-operator js-yaml` was done; .ci/run does that).
import fs from "node:fs";
import yaml from "js-yaml";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const kinds = { PodMonitor, ServiceMonitor };
for (const file of process.argv.slice(2)) {
  let n = 0;
  for (const doc of yaml.loadAll(fs.readFileSync(file, "utf8"))) {
    if (!doc || doc.apiVersion !== "monitoring.coreos.com/v1") continue;
    const Kind = kinds[doc.kind];
    if (!Kind) throw new Error(`${file}: no schema for ${doc.kind}`);
    try {
      new Kind(doc).validate();
    } catch (e) {
      throw new Error(`${file}: ${doc.kind} ${doc.metadata.name}: ${e.message}`);
    }
    n++;
  }
  console.log(`${file}: ${n} prometheus-operator resources valid`);
}
