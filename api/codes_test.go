package api_test

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// codesTS is the TypeScript file of the client package that carries the
// close codes and the REST error codes. TestJSCodes writes it from the Go
// sources with TANDEM_UPDATE_CODES=1 and fails when it is stale.
const codesTS = "../clients/js/src/codes.ts"

// closeCodeSource declares the WebSocket close codes.
const closeCodeSource = "../sync/wire/close.go"

type closeCodeDef struct {
	name  string // without the "Close" prefix
	value int
	doc   string
}

type errorCodeDef struct {
	code     string
	statuses []int
}

// TestJSCodes checks that clients/js/src/codes.ts lists exactly the close
// codes of sync/wire (the CloseCode constants) and the error codes the REST
// API answers with (every errorf call in package api), so that the client
// and the server cannot drift apart.
func TestJSCodes(t *testing.T) {
	t.Parallel()
	closes := parseCloseCodes(t, closeCodeSource)
	errs := parseErrorCodes(t, ".")
	if len(closes) < 10 || len(errs) < 20 {
		t.Fatalf("parsed only %d close codes and %d error codes", len(closes), len(errs))
	}
	// The parse agrees with what the README and the protocol promise.
	for name, want := range map[string]int{"TokenExpired": 4401, "Revoked": 4403, "GoingAway": 1001, "SlowConsumer": 4001} {
		if got := closeValue(closes, name); got != want {
			t.Fatalf("Close%s parsed as %d, want %d", name, got, want)
		}
	}
	for _, code := range []string{"document_not_found", "invalid_json", "unauthorized", "forbidden", "route_not_found", "method_not_allowed"} {
		if !hasErrorCode(errs, code) {
			t.Fatalf("error code %q not found in package api", code)
		}
	}

	want := renderCodesTS(closes, errs)
	if os.Getenv("TANDEM_UPDATE_CODES") != "" {
		if err := os.WriteFile(codesTS, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(codesTS)
	if err != nil {
		t.Fatalf("%v (write it with TANDEM_UPDATE_CODES=1 go test ./api -run TestJSCodes)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: a close code in sync/wire or an error code in package api changed.\n"+
			"Regenerate it with TANDEM_UPDATE_CODES=1 go test ./api -run TestJSCodes\n--- want ---\n%s", codesTS, want)
	}
}

func closeValue(defs []closeCodeDef, name string) int {
	for _, d := range defs {
		if d.name == name {
			return d.value
		}
	}
	return -1
}

func hasErrorCode(defs []errorCodeDef, code string) bool {
	for _, d := range defs {
		if d.code == code {
			return true
		}
	}
	return false
}

// parseCloseCodes reads the constants of type CloseCode, their values
// (integer literals) and their doc comments.
func parseCloseCodes(t *testing.T, file string) []closeCodeDef {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var out []closeCodeDef
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "CloseCode" {
				continue
			}
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.INT {
					t.Fatalf("%s: %s is not an integer literal", fset.Position(name.Pos()), name.Name)
				}
				v, err := strconv.Atoi(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				doc := strings.Join(strings.Fields(vs.Doc.Text()), " ")
				doc = strings.TrimPrefix(doc, name.Name+": ")
				out = append(out, closeCodeDef{name: strings.TrimPrefix(name.Name, "Close"), value: v, doc: doc})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].value < out[j].value })
	return out
}

// parseErrorCodes finds every errorf(http.StatusX, "code", …) call in the
// package's non-test files.
func parseErrorCodes(t *testing.T, dir string) []errorCodeDef {
	t.Helper()
	statusByName := map[string]int{}
	for code := 100; code < 600; code++ {
		if text := http.StatusText(code); text != "" {
			name := "Status" + strings.NewReplacer(" ", "", "-", "", "'", "").Replace(text)
			statusByName[name] = code
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	byCode := map[string]map[int]bool{}
	fset := token.NewFileSet()
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if fn, ok := call.Fun.(*ast.Ident); !ok || fn.Name != "errorf" || len(call.Args) != 3 {
				return true
			}
			at := fset.Position(call.Pos())
			lit, ok := call.Args[1].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Fatalf("%s: errorf's code is not a string literal", at)
			}
			code, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			sel, ok := call.Args[0].(*ast.SelectorExpr)
			if !ok {
				t.Fatalf("%s: errorf's status is not http.StatusX", at)
			}
			status, ok := statusByName[sel.Sel.Name]
			if !ok {
				t.Fatalf("%s: unknown status %s", at, sel.Sel.Name)
			}
			if byCode[code] == nil {
				byCode[code] = map[int]bool{}
			}
			byCode[code][status] = true
			return true
		})
	}
	var out []errorCodeDef
	for code, statuses := range byCode {
		d := errorCodeDef{code: code}
		for s := range statuses {
			d.statuses = append(d.statuses, s)
		}
		sort.Ints(d.statuses)
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].code < out[j].code })
	return out
}

func renderCodesTS(closes []closeCodeDef, errs []errorCodeDef) []byte {
	var b bytes.Buffer
	b.WriteString(`// Code generated by TestJSCodes (api/codes_test.go) from sync/wire/close.go and
// the errorf calls of package api. DO NOT EDIT. After changing a close code or
// an error code on the Go side, regenerate it:
//
//	TANDEM_UPDATE_CODES=1 go test ./api -run TestJSCodes

/** The WebSocket close codes Tandem uses (sync/wire/close.go). */
export const CloseCode = {
`)
	for _, c := range closes {
		fmt.Fprintf(&b, "  /** %s */\n  %s: %d,\n", strings.ReplaceAll(c.doc, "*/", "* /"), c.name, c.value)
	}
	b.WriteString(`} as const

/** The name of a close code, such as "TokenExpired". */
export type CloseCodeName = keyof typeof CloseCode

/** A close code Tandem sends, such as 4401. */
export type CloseCodeValue = (typeof CloseCode)[CloseCodeName]

/**
 * The stable error codes of the REST API (the "code" of
 * {"error": {"code", "message"}}), each with the HTTP statuses that carry it.
 */
export const ErrorCodes = {
`)
	for _, e := range errs {
		s := make([]string, len(e.statuses))
		for i, v := range e.statuses {
			s[i] = strconv.Itoa(v)
		}
		fmt.Fprintf(&b, "  %s: [%s],\n", e.code, strings.Join(s, ", "))
	}
	b.WriteString(`} as const

/** A REST API error code, such as "document_not_found". */
export type ErrorCode = keyof typeof ErrorCodes
`)
	return b.Bytes()
}
