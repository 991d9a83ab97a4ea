// Package samples holds ready-made set-ups for running linkbatch (a cron
// wrapper, systemd units, Kubernetes manifests) and, in its tests, the
// checks that they pass linkbatch only real flags, stop within its grace
// period and, for the cron wrapper, do what they say against a fake tenant.
// It has no API.
package samples
