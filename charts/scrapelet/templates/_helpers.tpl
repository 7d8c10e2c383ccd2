{{/* Names, labels and the agent's config. */}}

{{- define "scrapelet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scrapelet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "scrapelet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scrapelet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "scrapelet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "scrapelet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: agent
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "scrapelet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scrapelet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "scrapelet.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where Secret <name> is mounted. */}}
{{- define "scrapelet.secretDir" -}}
/etc/scrapelet/secrets/{{ . }}
{{- end }}

{{/* Where the web config Secret (web.configSecret) is mounted. */}}
{{- define "scrapelet.webDir" -}}
/etc/scrapelet/web
{{- end }}

{{/* Refuses web values that cannot work together. */}}
{{- define "scrapelet.checkWeb" -}}
{{- $web := .Values.web }}
{{- if and $web.tls.enabled (not $web.configSecret.name) }}
{{- fail "web.tls.enabled needs web.configSecret.name: the web config with tls_server_config" }}
{{- end }}
{{- if and $web.basicAuth.secret (not $web.configSecret.name) }}
{{- fail "web.basicAuth.secret needs web.configSecret.name: the web config with basic_auth_users" }}
{{- end }}
{{- if and (or $web.tls.caKey $web.tls.serverName $web.tls.clientCertKey $web.tls.clientKeyKey) (not $web.tls.enabled) }}
{{- fail "web.tls.caKey, serverName, clientCertKey and clientKeyKey need web.tls.enabled" }}
{{- end }}
{{- if ne (empty $web.tls.clientCertKey) (empty $web.tls.clientKeyKey) }}
{{- fail "web.tls.clientCertKey and web.tls.clientKeyKey go together" }}
{{- end }}
{{- end }}

{{/* The names of the Secrets the remote-write endpoints and the self-scrape read, sorted,
without duplicates. */}}
{{- define "scrapelet.secretNames" -}}
{{- $names := list }}
{{- with .Values.web.basicAuth.secret }}{{ $names = append $names . }}{{ end }}
{{- range .Values.remoteWrite }}
{{- with .basicAuth }}{{ $names = append $names .passwordSecret.name }}{{ with .usernameSecret }}{{ $names = append $names .name }}{{ end }}{{ end }}
{{- with .bearerTokenSecret }}{{ $names = append $names .name }}{{ end }}
{{- end }}
{{- toJson ($names | uniq | sortAlpha) }}
{{- end }}

{{/* True when some scrape config attaches node metadata, so that the agent watches nodes. */}}
{{- define "scrapelet.watchesNodes" -}}
{{- $nodes := and .Values.podScraping.enabled .Values.podScraping.attachNodeMetadata }}
{{- range .Values.extraScrapeConfigs }}
{{- range (default list .kubernetes_sd_configs) }}
{{- if dig "attach_metadata" "node" false . }}{{ $nodes = true }}{{ end }}
{{- end }}
{{- end }}
{{- if $nodes }}true{{ end }}
{{- end }}

{{/*
The relabel rules of the annotation-based pod job: examples/kubernetes.yml's, kept equal to
it by tests/chart.rs.
*/}}
{{- define "scrapelet.podRelabelConfigs" -}}
# Only pods that ask for it, and only while they run.
- source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
  action: keep
  regex: "true"
- source_labels: [__meta_kubernetes_pod_phase]
  action: keep
  regex: Running
# The port to scrape: the annotation when set, else the declared container port.
- source_labels: [__meta_kubernetes_pod_container_port_number]
  target_label: __tmp_port
- source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_port]
  regex: (\d+)
  target_label: __tmp_port
# Which targets scrape it: those whose declared port is the one (a container without
# declared ports stands for any port).
- source_labels: [__meta_kubernetes_pod_container_port_number]
  target_label: __tmp_declared
- source_labels: [__meta_kubernetes_pod_container_port_number, __meta_kubernetes_pod_annotation_prometheus_io_port]
  regex: ;(\d+)
  target_label: __tmp_declared
- source_labels: [__tmp_declared]
  action: keepequal
  target_label: __tmp_port
# The address: pod IP and port (IPv6 in brackets).
- source_labels: [__tmp_port, __meta_kubernetes_pod_ip]
  regex: (\d+);(([A-Fa-f0-9]{1,4}::?){1,7}[A-Fa-f0-9]{1,4})
  replacement: "[$2]:$1"
  target_label: __address__
- source_labels: [__tmp_port, __meta_kubernetes_pod_ip]
  regex: (\d+);((([0-9]+?)(\.|$)){4})
  replacement: $2:$1
  target_label: __address__
# Scheme, path and URL parameters from the annotations.
- source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scheme]
  regex: (https?)
  target_label: __scheme__
- source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
  regex: (.+)
  target_label: __metrics_path__
- action: labelmap
  regex: __meta_kubernetes_pod_annotation_prometheus_io_param_(.+)
  replacement: __param_$1
# Where the series come from.
- source_labels: [__meta_kubernetes_namespace]
  target_label: namespace
- source_labels: [__meta_kubernetes_pod_name]
  target_label: pod
- source_labels: [__meta_kubernetes_pod_container_name]
  target_label: container
- source_labels: [__meta_kubernetes_pod_node_name]
  target_label: node
{{- end }}

{{/* The agent's config file (Prometheus YAML). */}}
{{- define "scrapelet.config" -}}
{{- $external := dict }}
{{- range $k, $v := .Values.externalLabels }}
{{- if $v }}{{ $_ := set $external $k (toString $v) }}{{ end }}
{{- end }}
{{- $pods := .Values.podScraping -}}
# The scrapelet agent's config (Prometheus YAML), rendered by the scrapelet Helm chart from
# its values. ${NODE_NAME} expands to this node's name when the agent reads the file.
global:
  scrape_interval: {{ .Values.scrape.interval | quote }}
  scrape_timeout: {{ .Values.scrape.timeout | quote }}
  {{- with $external }}
  external_labels:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.scrape.seriesLimit }}
  series_limit: {{ int64 . }}
  {{- end }}
  {{- with .Values.scrape.seriesLimitPerMetric }}
  series_limit_per_metric: {{ int64 . }}
  {{- end }}
  {{- with .Values.scrape.labelLimit }}
  label_limit: {{ int64 . }}
  {{- end }}
  {{- if kindIs "slice" .Values.scrape.labelLimitKeep }}
  label_limit_keep: {{ toJson .Values.scrape.labelLimitKeep }}
  {{- end }}
{{- if not (or .Values.selfMonitor.enabled $pods.enabled .Values.extraScrapeConfigs) }}
scrape_configs: []
{{- else }}
scrape_configs:
  {{- if .Values.selfMonitor.enabled }}
  # The agent's own metrics, labelled with its node; honor_labels keeps the `job` label of
  # its per-job metrics (scrapelet_targets{job="kubernetes-pods"}).
  - job_name: scrapelet
    honor_labels: true
    {{- with .Values.web.tls }}
    {{- if .enabled }}
    scheme: https
    tls_config:
      {{- if .caKey }}
      ca_file: {{ printf "%s/%s" (include "scrapelet.webDir" .) .caKey | quote }}
      {{- with .serverName }}
      server_name: {{ . | quote }}
      {{- end }}
      {{- else }}
      # No CA given (web.tls.caKey): the agent's own certificate over 127.0.0.1, unverified.
      insecure_skip_verify: true
      {{- end }}
      {{- if .clientCertKey }}
      cert_file: {{ printf "%s/%s" (include "scrapelet.webDir" .) .clientCertKey | quote }}
      key_file: {{ printf "%s/%s" (include "scrapelet.webDir" .) .clientKeyKey | quote }}
      {{- end }}
    {{- end }}
    {{- end }}
    {{- with .Values.web.basicAuth }}
    {{- if .secret }}
    basic_auth:
      username_file: {{ printf "%s/%s" (include "scrapelet.secretDir" .secret) .usernameKey | quote }}
      password_file: {{ printf "%s/%s" (include "scrapelet.secretDir" .secret) .passwordKey | quote }}
    {{- end }}
    {{- end }}
    static_configs:
      - targets: ["127.0.0.1:{{ .Values.port }}"]
        labels:
          node: "${NODE_NAME}"
  {{- end }}
  {{- if $pods.enabled }}
  # The pods of this node that ask for it with prometheus.io/* annotations.
  - job_name: {{ $pods.jobName | quote }}
    kubernetes_sd_configs:
      - role: pod
        {{- with $pods.namespaces }}
        namespaces:
          names:
            {{- toYaml . | nindent 12 }}
        {{- end }}
        {{- if $pods.attachNodeMetadata }}
        attach_metadata:
          node: true
        {{- end }}
    relabel_configs:
      {{- include "scrapelet.podRelabelConfigs" . | nindent 6 }}
      {{- with $pods.extraRelabelConfigs }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $pods.metricRelabelConfigs }}
    metric_relabel_configs:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  {{- end }}
  {{- with .Values.extraScrapeConfigs }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- if or .Values.buffer.maxSize .Values.buffer.maxAge .Values.buffer.fsyncInterval .Values.scrape.maxBodySize }}
agent:
  {{- with .Values.scrape.maxBodySize }}
  scrape:
    max_body_size: {{ . | quote }}
  {{- end }}
  {{- if or .Values.buffer.maxSize .Values.buffer.maxAge .Values.buffer.fsyncInterval }}
  buffer:
    {{- with .Values.buffer.maxSize }}
    max_size: {{ . | quote }}
    {{- end }}
    {{- with .Values.buffer.maxAge }}
    max_age: {{ . | quote }}
    {{- end }}
    {{- with .Values.buffer.fsyncInterval }}
    fsync_interval: {{ . | quote }}
    {{- end }}
  {{- end }}
{{- end }}
{{- with .Values.remoteWrite }}
remote_write:
  {{- range $i, $rw := . }}
  {{- if and .basicAuth .bearerTokenSecret }}
  {{- fail (printf "remoteWrite[%d] (%s): basicAuth and bearerTokenSecret exclude each other" $i .url) }}
  {{- end }}
  - url: {{ .url | quote }}
    {{- with .name }}
    name: {{ . | quote }}
    {{- end }}
    {{- with .remoteTimeout }}
    remote_timeout: {{ . | quote }}
    {{- end }}
    {{- with .headers }}
    headers:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .basicAuth }}
    basic_auth:
      {{- if and .username .usernameSecret }}
      {{- fail (printf "remoteWrite[%d] (%s): basicAuth.username and basicAuth.usernameSecret exclude each other" $i $rw.url) }}
      {{- end }}
      {{- with .usernameSecret }}
      username_file: {{ printf "%s/%s" (include "scrapelet.secretDir" .name) .key | quote }}
      {{- else }}
      username: {{ .username | quote }}
      {{- end }}
      password_file: {{ printf "%s/%s" (include "scrapelet.secretDir" .passwordSecret.name) .passwordSecret.key | quote }}
    {{- end }}
    {{- with .bearerTokenSecret }}
    authorization:
      type: Bearer
      credentials_file: {{ printf "%s/%s" (include "scrapelet.secretDir" .name) .key | quote }}
    {{- end }}
    {{- with .tlsConfig }}
    tls_config:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .queueConfig }}
    queue_config:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .writeRelabelConfigs }}
    write_relabel_configs:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .maxHourlySeries }}
    max_hourly_series: {{ int64 . }}
    {{- end }}
    {{- with .maxDailySeries }}
    max_daily_series: {{ int64 . }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end }}
