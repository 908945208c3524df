package console

import (
	"net/http"
	"strings"
)

// langs are the console's languages; the first is the default.
var langs = []string{"en", "zh-CN"}

func isLang(l string) bool {
	for _, x := range langs {
		if x == l {
			return true
		}
	}
	return false
}

// lang is the request's language: the switch's cookie, else the browser's Accept-Language
// (the first of its languages the console has), else English.
func (c *Console) lang(r *http.Request) string {
	if ck, err := r.Cookie(langCookie); err == nil && isLang(ck.Value) {
		return ck.Value
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag := strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
		switch {
		case tag == "zh" || strings.HasPrefix(tag, "zh-"):
			return "zh-CN"
		case tag == "en" || strings.HasPrefix(tag, "en-"):
			return "en"
		}
	}
	return "en"
}

// tr translates an English message into lang. Messages the API words (errors) stay as the
// API wrote them.
func tr(lang, key string) string {
	if lang == "zh-CN" {
		if v, ok := zh[key]; ok {
			return v
		}
	}
	return key
}
