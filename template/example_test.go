package template_test

import (
	"fmt"

	"github.com/cairn-dev/cairn/template"
)

func ExampleParseTemplateFlag() {
	t, err := template.ParseTemplateFlag("web.ctmpl:/etc/nginx/conf.d/web.conf:nginx -s reload")
	if err != nil {
		panic(err)
	}
	fmt.Printf("source %s\ndestination %s\ncommand %s\n", t.Source, t.Destination, t.Command)
	// Output:
	// source web.ctmpl
	// destination /etc/nginx/conf.d/web.conf
	// command nginx -s reload
}

func ExampleParseWait() {
	w, _ := template.ParseWait("2s")
	fmt.Println(w)
	w, _ = template.ParseWait("1s:5s")
	fmt.Println(w)
	// Output:
	// 2s:8s
	// 1s:5s
}
