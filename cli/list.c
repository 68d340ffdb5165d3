/* canopy CLI: paged lists into a table or a JSON array, and one-object show. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/pbjson.h"

/* The address of a string field of m, NULL if m has none by that name. */
static char **string_field(ProtobufCMessage *m, const char *name)
{
	const ProtobufCFieldDescriptor *f =
		protobuf_c_message_descriptor_get_field_by_name(m->descriptor,
								name);

	if (!f || f->type != PROTOBUF_C_TYPE_STRING ||
	    f->label == PROTOBUF_C_LABEL_REPEATED)
		return NULL;
	return (char **)((char *)m + f->offset);
}

void cli_pages_free(ProtobufCMessage **pages, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		protobuf_c_message_free_unpacked(pages[i], NULL);
	free(pages);
}

int cli_list_pages(struct cli *c, const char *method, ProtobufCMessage *req,
		   const ProtobufCMessageDescriptor *resp_desc,
		   ProtobufCMessage ***pages, size_t *npages)
{
	char **req_tok = string_field(req, "page_token"), **next;
	ProtobufCMessage **v = NULL, **grown, *resp;
	size_t n = 0;
	int rc;

	*pages = NULL;
	*npages = 0;
	for (;;) {
		rc = cli_call(c, method, req, resp_desc, &resp);
		if (rc)
			goto err;
		grown = realloc(v, (n + 1) * sizeof(*v));
		if (!grown) {
			protobuf_c_message_free_unpacked(resp, NULL);
			rc = cli_fail(c, CLI_EXIT_FAIL, "out of memory");
			goto err;
		}
		v = grown;
		v[n++] = resp;
		next = string_field(resp, "next_page_token");
		if (!req_tok || !next || !*next || !**next)
			break;
		if (!strcmp(*next, *req_tok) || n == CLI_PAGES_MAX) {
			rc = cli_fail(c, CLI_EXIT_FAIL,
				      "%s: the server's paging does not end "
				      "(page token '%.40s' after %zu pages)",
				      method, *next, n);
			goto err;
		}
		*req_tok = *next; /* owned by the kept page */
	}
	*pages = v;
	*npages = n;
	return 0;
err:
	cli_pages_free(v, n);
	return rc;
}

/* The items of the repeated message field `field` of page (none when the
 * page has no such field). */
static size_t page_items(const ProtobufCMessage *page, const char *field,
			 ProtobufCMessage *const **items)
{
	const ProtobufCFieldDescriptor *f =
		protobuf_c_message_descriptor_get_field_by_name(
			page->descriptor, field);

	*items = NULL;
	if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE ||
	    f->label != PROTOBUF_C_LABEL_REPEATED)
		return 0;
	*items = *(ProtobufCMessage *const **)((const char *)page + f->offset);
	return *(const size_t *)((const char *)page + f->quantifier_offset);
}

/* What is done with each item: a JSON value or a table row. */
struct item_sink {
	const struct cli_list *l;
	struct cli_json *j; /* JSON when set, else the table */
	struct cli_table *t;
	uint64_t now;
};

static int item_put(struct item_sink *s, const ProtobufCMessage *item)
{
	if (s->j) {
		cli_pb_json(s->j, item);
		return 0;
	}
	return s->l->row(s->t, item, s->now);
}

/* Every item of every page into s, in order or (l->reverse) reversed;
 * stops at the first error. */
static int items_each(struct item_sink *s, ProtobufCMessage *const *pages,
		      size_t n)
{
	ProtobufCMessage *const *items;
	size_t i, k, cnt;
	int rc = 0;

	for (i = 0; !rc && i < n; i++) {
		const ProtobufCMessage *pg =
			pages[s->l->reverse ? n - 1 - i : i];

		cnt = page_items(pg, s->l->field, &items);
		for (k = 0; !rc && k < cnt; k++)
			rc = item_put(s,
				      items[s->l->reverse ? cnt - 1 - k : k]);
	}
	return rc;
}

int cli_list_print(struct cli *c, const struct cli_list *l,
		   ProtobufCMessage *const *pages, size_t n)
{
	struct item_sink s = { .l = l, .now = cli_now_ms() };
	struct cli_table t;
	struct cli_json j;
	int rc;

	if (c->json) {
		cli_json_init(&j, c->out);
		cli_json_begin_array(&j);
		s.j = &j;
		(void)items_each(&s, pages, n);
		cli_json_end_array(&j);
		cli_json_finish(&j);
		return 0;
	}
	cli_table_init(&t, l->ncols, l->hdr);
	s.t = &t;
	rc = items_each(&s, pages, n);
	if (rc)
		rc = cli_fail(c, CLI_EXIT_FAIL, "out of memory");
	else
		cli_table_print(&t, c->out);
	cli_table_free(&t);
	return rc;
}

int cli_list_run(struct cli *c, const struct cli_list *l, ProtobufCMessage *req)
{
	ProtobufCMessage **pages;
	size_t n;
	int rc;

	rc = cli_list_pages(c, l->method, req, l->resp_desc, &pages, &n);
	if (rc)
		return rc;
	rc = cli_list_print(c, l, pages, n);
	cli_pages_free(pages, n);
	return rc;
}

int cli_show_run(struct cli *c, const char *method, const ProtobufCMessage *req,
		 const ProtobufCMessageDescriptor *resp_desc,
		 void (*print)(struct cli *c, const ProtobufCMessage *m))
{
	ProtobufCMessage *m;
	int rc;

	rc = cli_call(c, method, req, resp_desc, &m);
	if (rc)
		return rc;
	if (c->json)
		cli_print_json(c, m);
	else
		print(c, m);
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}
