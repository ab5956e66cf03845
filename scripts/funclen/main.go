// Command funclen fails when a function of the module is longer than 100
// lines, podfim's house limit: a longer function is several steps that want
// names of their own.
//
// It reads every .go file under the module root except tests (*_test.go),
// testdata, hidden directories and nested modules (test/cluster and tools
// have their own go.mod: the cluster harness is exempt). A function's length
// counts the lines from its "func" keyword to its closing brace; a function
// literal counts toward the declaration it sits in.
//
// It names every function over the limit. There is no allowlist: the last
// two offenders (inject.ParseAnnotations, 150 lines, and
// inject.Config.sidecar, 197) were split before the check came in.
//
//	go run ./scripts/funclen [-max 100] [root]
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	max := flag.Int("max", 100, "longest function allowed, in lines")
	flag.Parse()
	root := "."
	switch flag.NArg() {
	case 0:
	case 1:
		root = flag.Arg(0)
	default:
		fmt.Fprintln(os.Stderr, "usage: funclen [-max N] [root]")
		os.Exit(2)
	}
	funcs, err := scan(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "funclen:", err)
		os.Exit(2)
	}
	problems := check(funcs, *max)
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "funclen: %d function(s) over %d lines: split each into steps with names of their own\n", len(problems), *max)
		os.Exit(1)
	}
}

// fn is one function declaration.
type fn struct {
	name  string // "internal/inject.Config.sidecar": directory, receiver type, name
	pos   string // "internal/inject/sidecar.go:42"
	lines int
}

// scan returns every function declared in the non-test Go files under root.
func scan(root string) ([]fn, error) {
	var funcs []fn
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == root {
				return nil
			}
			name := d.Name()
			if name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		if ast.IsGenerated(f) {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(rel))
		for _, decl := range f.Decls {
			d, ok := decl.(*ast.FuncDecl)
			if !ok || d.Body == nil {
				continue
			}
			start, end := fset.Position(d.Pos()), fset.Position(d.End())
			funcs = append(funcs, fn{
				name:  dir + "." + funcName(d),
				pos:   fmt.Sprintf("%s:%d", filepath.ToSlash(rel), start.Line),
				lines: end.Line - start.Line + 1,
			})
		}
		return nil
	})
	return funcs, err
}

// funcName is "Name", or "Type.Name" for a method (pointer or not, without
// type parameters).
func funcName(d *ast.FuncDecl) string {
	if d.Recv == nil || len(d.Recv.List) == 0 {
		return d.Name.Name
	}
	t := d.Recv.List[0].Type
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
			continue
		case *ast.IndexExpr:
			t = x.X
			continue
		case *ast.IndexListExpr:
			t = x.X
			continue
		case *ast.ParenExpr:
			t = x.X
			continue
		case *ast.Ident:
			return x.Name + "." + d.Name.Name
		}
		return d.Name.Name
	}
}

// check returns one line per function over max lines.
func check(funcs []fn, max int) []string {
	var problems []string
	for _, f := range funcs {
		if f.lines > max {
			problems = append(problems, fmt.Sprintf("%s: %s is %d lines, more than %d", f.pos, f.name, f.lines, max))
		}
	}
	return problems
}
