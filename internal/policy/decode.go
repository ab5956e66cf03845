package policy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// document is the file as written: pointers tell an omitted value (which
// gets its default) from an explicit zero (which is an error).
type document struct {
	Version *int        `json:"version"`
	Hash    *string     `json:"hash"`
	Rules   []Rule      `json:"rules"`
	Exclude []string    `json:"exclude"`
	Limits  *limitsFile `json:"limits"`
}

type limitsFile struct {
	MaxFiles     *int   `json:"maxFiles"`
	MaxDepth     *int   `json:"maxDepth"`
	MaxFileBytes *int64 `json:"maxFileBytes"`
	MaxFindings  *int   `json:"maxFindings"`
}

// decode turns YAML or JSON into a Policy with defaults filled in, checking
// the shape of the document but not its meaning (that is Validate's job).
//
// sigs.k8s.io/yaml converts YAML to JSON and rejects duplicate keys, but
// encoding/json matches field names case-insensitively and a second YAML
// document is silently dropped; a policy with "Preset:" or a stray "---"
// would then mean something other than what it says. So the document is
// first checked field by field against the Go types, exactly.
func decode(data []byte) (*Policy, error) {
	if err := singleDocument(data); err != nil {
		return nil, err
	}
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	var tree any
	d := json.NewDecoder(bytes.NewReader(j))
	d.UseNumber()
	if err := d.Decode(&tree); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	if tree == nil {
		return nil, errors.New("empty policy (want at least version and rules)")
	}
	var errs []error
	checkShape(tree, reflect.TypeFor[document](), "", &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var doc document
	if err := json.Unmarshal(j, &doc); err != nil {
		// checkShape accepted it, so this is a bug, not a user error.
		return nil, fmt.Errorf("decoding policy: %w", err)
	}

	// Omitted values get their defaults; explicit ones, zero included, are
	// kept for Validate to judge.
	p := &Policy{Hash: DefaultHash, Rules: doc.Rules, Exclude: doc.Exclude, Limits: DefaultLimits()}
	if doc.Version != nil {
		p.Version = *doc.Version
	}
	if doc.Hash != nil {
		p.Hash = *doc.Hash
	}
	if l := doc.Limits; l != nil {
		set(&p.Limits.MaxFiles, l.MaxFiles)
		set(&p.Limits.MaxDepth, l.MaxDepth)
		set(&p.Limits.MaxFileBytes, l.MaxFileBytes)
		set(&p.Limits.MaxFindings, l.MaxFindings)
	}
	return p, nil
}

func set[T any](dst, v *T) {
	if v != nil {
		*dst = *v
	}
}

// singleDocument rejects a stream of several YAML documents: the YAML
// library reads the first and drops the rest without a word. Document
// markers ("---", "...") can only appear at the start of a line, even inside
// multi-line scalars, so a line scan is exact.
func singleDocument(data []byte) error {
	s := bufio.NewScanner(bytes.NewReader(data))
	s.Buffer(nil, maxPolicyBytes+1)
	content, ended := false, false
	for n := 1; s.Scan(); n++ {
		line := s.Text()
		switch {
		case isMarker(line, "---"):
			if content || ended {
				return fmt.Errorf("line %d: a second YAML document (a policy is exactly one document)", n)
			}
			// Content may follow the marker on the same line ("--- {version: 1}").
			if rest := strings.TrimSpace(line[3:]); rest != "" && rest[0] != '#' {
				content = true
			}
		case isMarker(line, "..."):
			ended = true
		case strings.HasPrefix(line, "%"):
			// A directive (%YAML 1.1) before the document.
		default:
			if t := strings.TrimSpace(line); t != "" && t[0] != '#' {
				if ended {
					return fmt.Errorf("line %d: content after the end of the YAML document", n)
				}
				content = true
			}
		}
	}
	return s.Err()
}

func isMarker(line, m string) bool {
	return strings.HasPrefix(line, m) && (len(line) == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r')
}

// checkShape checks that the decoded JSON value v fits the Go type t: field
// names exact (case included), the right kinds, integers where integers go.
// It appends one error per problem, named by its place in the document
// ("rules[2].attributes[0]"). null stands for an omitted value.
func checkShape(v any, t reflect.Type, where string, errs *[]error) {
	bad := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if where != "" {
			msg = where + ": " + msg
		}
		*errs = append(*errs, errors.New(msg))
	}
	if v == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			bad("want a mapping, got %s", describe(v))
			return
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			f, ok := fields[k]
			if !ok {
				bad("unknown field %q%s", k, suggest(k, fields))
				continue
			}
			checkShape(m[k], f, join(where, k), errs)
		}
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			bad("want a list, got %s", describe(v))
			return
		}
		for i, e := range a {
			checkShape(e, t.Elem(), fmt.Sprintf("%s[%d]", where, i), errs)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			bad("want a string, got %s", describe(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			bad("want true or false, got %s", describe(v))
		}
	case reflect.Int, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			bad("want an integer, got %s", describe(v))
			return
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			bad("want an integer, got %s", n)
		}
	default:
		panic("policy: checkShape: unsupported type " + t.String())
	}
}

func join(where, field string) string {
	if where == "" {
		return field
	}
	return where + "." + field
}

// jsonFields maps the JSON names of t's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = f.Type
		}
	}
	return m
}

// suggest names the field k was probably meant to be.
func suggest(k string, fields map[string]reflect.Type) string {
	for name := range fields {
		if strings.EqualFold(name, k) {
			return fmt.Sprintf(" (did you mean %q?)", name)
		}
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	return " (known: " + strings.Join(names, ", ") + ")"
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case json.Number:
		return "the number " + v.String()
	case bool:
		return fmt.Sprintf("%t (quote yes/no/on/off to make them strings)", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}
