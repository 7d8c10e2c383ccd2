{{/*
The scrape endpoint of a ServiceMonitor or PodMonitor: the labels the dashboard expects, as
the agent's own self-scrape sets them (job="scrapelet", node; honorLabels keeps the `job`
label of the agent's per-job metrics).
*/}}
{{- define "scrapelet.monitorEndpoint" -}}
{{- $m := .monitor }}
- port: http-metrics
  path: /metrics
  honorLabels: true
  {{- with $m.interval }}
  interval: {{ . }}
  {{- end }}
  {{- with $m.scrapeTimeout }}
  scrapeTimeout: {{ . }}
  {{- end }}
  relabelings:
    - sourceLabels: [__meta_kubernetes_pod_node_name]
      targetLabel: node
    - targetLabel: job
      replacement: scrapelet
    {{- with $m.relabelings }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $m.metricRelabelings }}
  metricRelabelings:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
