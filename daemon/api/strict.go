package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"
)

// maxDepth bounds the nesting of a request body; no request type nests deeper than a few
// levels, and a deep body costs the decoder stack.
const maxDepth = 32

// Decode decodes one JSON value, the whole of data, into v and refuses what encoding/json
// would let through silently, so that what runs is what a proxy, a log or a reviewer reads
// in the body: a key given twice at any level (encoding/json keeps the last), a key that
// matches a field only in another letter case (encoding/json matches case-insensitively), a
// key no field has, invalid UTF-8 and escaped lone surrogates (both silently replaced by
// U+FFFD), nesting deeper than 32, and anything after the value.
func Decode(data []byte, v any) error {
	if !utf8.Valid(data) {
		return errors.New("the body is not valid UTF-8")
	}
	if err := checkEscapes(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer {
		return errors.New("decode: not a pointer")
	}
	if err := walk(dec, t.Elem(), "", 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("the body has data after its JSON value")
	}
	strict := json.NewDecoder(bytes.NewReader(data))
	strict.DisallowUnknownFields()
	if err := strict.Decode(v); err != nil {
		return err
	}
	return nil
}

// walk reads one value from dec, checking its object keys against t (nil: any value).
func walk(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxErr(err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar: its type is encoding/json's to check
	}
	if depth >= maxDepth {
		return fmt.Errorf("the body nests deeper than %d levels", maxDepth)
	}
	t = shape(t)
	switch d {
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walk(dec, elem, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	case '{':
		var fields map[string]reflect.Type
		var elem reflect.Type
		if t != nil {
			switch t.Kind() {
			case reflect.Struct:
				fields = fieldsOf(t)
			case reflect.Map:
				elem = t.Elem()
			}
		}
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return syntaxErr(err)
			}
			key, _ := kt.(string)
			at := key
			if path != "" {
				at = path + "." + key
			}
			if seen[key] {
				return fmt.Errorf("key %q is given twice; give each key once", at)
			}
			seen[key] = true
			vt := elem
			if fields != nil {
				ft, ok := fields[key]
				if !ok {
					for name := range fields {
						if strings.EqualFold(name, key) {
							return fmt.Errorf("key %q: the field is %q (keys are case-sensitive)", at, joinPath(path, name))
						}
					}
					return fmt.Errorf("unknown field %q", at)
				}
				vt = ft
			}
			if err := walk(dec, vt, at, depth+1); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return syntaxErr(err)
	}
	return nil
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func syntaxErr(err error) error {
	if err == io.EOF {
		return errors.New("the body ends before its JSON value does")
	}
	return err
}

var (
	unmarshaler     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// shape is the type whose keys a JSON value is checked against: t without pointers, or nil
// when any keys are the type's own business (interfaces, json.RawMessage, types that decode
// themselves).
func shape(t reflect.Type) reflect.Type {
	for t != nil {
		if t.Implements(unmarshaler) || reflect.PointerTo(t).Implements(unmarshaler) ||
			t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
			return nil
		}
		switch t.Kind() {
		case reflect.Pointer:
			t = t.Elem()
		case reflect.Interface:
			return nil
		default:
			return t
		}
	}
	return nil
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// fieldsOf returns the JSON names of a struct's fields as encoding/json sees them: exported
// fields by their tag's name or their own, "-" left out, untagged embedded structs promoted.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	var add func(t reflect.Type, depth int)
	add = func(t reflect.Type, depth int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			ft := f.Type
			if f.Anonymous && name == "" {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if et.Kind() == reflect.Struct && depth < 8 {
					add(et, depth+1)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if _, taken := m[name]; !taken || depth == 0 {
				m[name] = ft
			}
		}
	}
	add(t, 0)
	fieldCache.Store(t, m)
	return m
}

// checkEscapes refuses \u escapes of lone UTF-16 surrogates, which encoding/json decodes to
// U+FFFD: the text that runs would not be the text that was sent.
func checkEscapes(data []byte) error {
	in := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case !in:
			in = c == '"'
		case c == '"':
			in = false
		case c == '\\' && i+1 < len(data):
			i++
			if data[i] != 'u' {
				continue
			}
			r, ok := hex4(data, i+1)
			if !ok {
				continue // malformed: encoding/json says so
			}
			i += 4
			switch {
			case r >= 0xdc00 && r <= 0xdfff:
				return errors.New("the body has an escaped lone surrogate (\\u" + string(data[i-3:i+1]) + "); send text as UTF-8")
			case r >= 0xd800 && r <= 0xdbff:
				lo, ok := uint16(0), false
				if i+2 < len(data) && data[i+1] == '\\' && data[i+2] == 'u' {
					lo, ok = hex4(data, i+3)
				}
				if !ok || lo < 0xdc00 || lo > 0xdfff {
					return errors.New("the body has an escaped lone surrogate; send text as UTF-8")
				}
				i += 6
			}
		}
	}
	return nil
}

func hex4(b []byte, at int) (uint16, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r uint16
	for _, c := range b[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | uint16(c)
	}
	return r, true
}
