package batch

import (
	"fmt"
	"unicode/utf8"

	"go.uber.org/zap"
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

func logResult(log *zap.Logger, res Result) {
	fields := []zap.Field{
		zap.Int("line", res.Line),
		zap.String("primary", logText(res.Primary)),
		zap.String("secondary", logText(res.Secondary)),
		zap.String("status", string(res.Status)),
		zap.Int("attempts", res.Attempts),
		zap.Int("http_status", res.HTTPStatus),
		zap.Int64("duration_ms", res.Duration.Milliseconds()),
	}
	if res.MessageID != "" {
		fields = append(fields, zap.String("message_id", logText(res.MessageID)))
	}
	if res.Warning != "" {
		fields = append(fields, zap.String("warning", res.Warning))
	}
	switch res.Status {
	case StatusInvalid, StatusFailed:
		fields = append(fields, zap.String("error", logText(res.Error)))
		if res.ErrorCode != "" {
			fields = append(fields, zap.String("error_code", logText(res.ErrorCode)))
		}
		log.Warn("row", fields...)
	default:
		log.Info("row", fields...)
	}
}
