{{/*
The scrape endpoint of a ServiceMonitor or PodMonitor: the labels the dashboard expects, as
the agent's own self-scrape sets them (job="scrapelet", node; honorLabels keeps the `job`
label of the agent's per-job metrics).
*/}}
{{- define "scrapelet.monitorEndpoint" -}}
{{- $m := .monitor }}
{{- $web := .web -}}
- port: http-metrics
  path: /metrics
  honorLabels: true
  {{- if $web.tls.enabled }}
  scheme: https
  tlsConfig:
    {{- if $web.tls.caKey }}
    ca:
      secret:
        name: {{ $web.configSecret.name }}
        key: {{ $web.tls.caKey }}
    {{- with $web.tls.serverName }}
    serverName: {{ . }}
    {{- end }}
    {{- else }}
    # No CA given (web.tls.caKey): the certificate is not verified.
    insecureSkipVerify: true
    {{- end }}
    {{- if $web.tls.clientCertKey }}
    cert:
      secret:
        name: {{ $web.configSecret.name }}
        key: {{ $web.tls.clientCertKey }}
    keySecret:
      name: {{ $web.configSecret.name }}
      key: {{ $web.tls.clientKeyKey }}
    {{- end }}
  {{- end }}
  {{- with $web.basicAuth }}
  {{- if .secret }}
  basicAuth:
    username:
      name: {{ .secret }}
      key: {{ .usernameKey }}
    password:
      name: {{ .secret }}
      key: {{ .passwordKey }}
  {{- end }}
  {{- end }}
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
