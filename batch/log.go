package batch

import (
	"fmt"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxLogField is the most bytes of one text field that a log line holds.
const maxLogField = 256

// logText returns s cut to maxLogField bytes (at a rune boundary), marked
// with its full length when cut.
func logText(s string) string {
	if len(s) <= maxLogField {
		return s
	}
	cut := maxLogField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:cut], len(s))
}

// logResult logs a row's result: a failed or invalid row at warn level,
// a row that sent requests at info level, and a row settled without a
// request (planned by a dry run, a skipped repeat) at debug level only: the
// results file has every row, and a line per row would cost a dry run of a
// million rows more than reading the file. The fields are built only when
// the line is logged.
func logResult(log *zap.Logger, res Result) {
	level := zapcore.InfoLevel
	switch {
	case res.Status == StatusInvalid, res.Status == StatusFailed:
		level = zapcore.WarnLevel
	case res.Attempts == 0:
		level = zapcore.DebugLevel
	}
	ce := log.Check(level, "row")
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.Int("line", res.Line),
		zap.String("primary", logText(res.Primary)),
		zap.String("secondary", logText(res.Secondary)),
		zap.String("status", string(res.Status)),
		zap.Int("attempts", res.Attempts),
		zap.Int("http_status", res.HTTPStatus),
		zap.Int64("duration_ms", res.Duration.Milliseconds()),
	}
	if res.SecondaryProvider != "" {
		fields = append(fields, zap.String("secondary_provider", logText(res.SecondaryProvider)))
	}
	if res.MessageID != "" {
		fields = append(fields, zap.String("message_id", logText(res.MessageID)))
	}
	if res.Warning != "" {
		fields = append(fields, zap.String("warning", res.Warning))
	}
	if level == zapcore.WarnLevel {
		fields = append(fields, zap.String("error", logText(res.Error)))
		if res.ErrorCode != "" {
			fields = append(fields, zap.String("error_code", logText(res.ErrorCode)))
		}
	}
	ce.Write(fields...)
}
