package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/linkbatch/linkbatch/batch"
)

// Columns are the fields a request may carry: the input file's columns.
var Columns = []string{"primary_user_id", "secondary_user_id", "secondary_provider", "connection_id", "link_with"}

// maxKey bounds a field name quoted in an error.
const maxKey = 40

// RowFromFields makes the row a message with the given fields asks for (a
// Redis stream entry: field names are the input's column names). A field
// that is not a column, or no field at all, is a poison message: the row
// carries the reason in Err, and the columns it does hold, for its result.
// The row is not yet validated (Row.Check).
func RowFromFields(fields map[string]string) batch.Row {
	if len(fields) == 0 {
		return batch.Row{Err: errors.New("message: no fields (want primary_user_id and secondary_user_id or link_with)")}
	}
	var row batch.Row
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first unknown key reported is always the same
	for _, k := range keys {
		v := fields[k]
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "primary_user_id":
			row.Primary = v
		case "secondary_user_id":
			row.Secondary = v
		case "secondary_provider":
			row.SecondaryProvider = v
		case "connection_id":
			row.ConnectionID = v
		case "link_with":
			row.LinkWith = v
		default:
			if row.Err == nil {
				row.Err = fmt.Errorf("message: field %s is not a column (want %s)", quoteKey(k), strings.Join(Columns, ", "))
			}
		}
	}
	return row
}

// RowFromJSON makes the row a message body asks for (a JetStream message:
// a JSON object whose keys are the input's column names and whose values
// are strings). A body that is not such an object is a poison message: the
// row carries the reason in Err, which never quotes a value, and the
// columns it could read.
func RowFromJSON(body []byte) batch.Row {
	dec := json.NewDecoder(bytes.NewReader(body))
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return batch.Row{Err: errors.New("message: the body is not a JSON object")}
	}
	if dec.More() {
		return batch.Row{Err: errors.New("message: the body holds more than one JSON value")}
	}
	fields := make(map[string]string, len(obj))
	var bad []string
	for k, v := range obj {
		s, ok := v.(string)
		if !ok {
			bad = append(bad, k)
			continue
		}
		fields[k] = s
	}
	row := RowFromFields(fields)
	if len(bad) > 0 {
		slices.Sort(bad)
		row.Err = fmt.Errorf("message: field %s is not a string", quoteKey(bad[0]))
	}
	return row
}

func quoteKey(k string) string {
	if len(k) > maxKey {
		return fmt.Sprintf("%q...", k[:maxKey])
	}
	return fmt.Sprintf("%q", k)
}
