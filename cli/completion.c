/* canopy CLI: a bash completion script generated from the command tables. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* "--name" for every option of t. */
static void opt_words(FILE *f, const struct cli_optdef *t)
{
	for (; t && t->name; t++)
		fprintf(f, " --%s", t->name);
}

/* Options that take a value, as a case pattern "--a|--b|-o". */
static void value_opts(FILE *f, const struct cli_object *objs, size_t n)
{
	const struct cli_optdef *t;
	const struct cli_cmd *k;
	size_t i;

	fputs("\t--server|--output|-o|--timeout", f);
	for (i = 0; i < n; i++)
		for (k = objs[i].cmds; k->object; k++)
			for (t = k->opts; t && t->name; t++)
				if (t->has_arg)
					fprintf(f, "|--%s", t->name);
}

static void cases(FILE *f, const struct cli_object *objs, size_t n)
{
	const struct cli_cmd *k;
	size_t i;

	fputs("\tcase \"$obj/$verb\" in\n\t/) words=\"", f);
	for (i = 0; i < n; i++)
		fprintf(f, "%s%s", i ? " " : "", objs[i].name);
	fputs(" $words\" ;;\n", f);
	for (i = 0; i < n; i++) {
		fprintf(f, "\t%s/) words=\"", objs[i].name);
		for (k = objs[i].cmds; k->object; k++)
			fprintf(f, "%s%s", k == objs[i].cmds ? "" : " ",
				k->verb);
		fputs("\" ;;\n", f);
		for (k = objs[i].cmds; k->object; k++) {
			if (!k->opts)
				continue;
			fprintf(f, "\t%s/%s) words=\"$words", k->object,
				k->verb);
			opt_words(f, k->opts);
			fputs("\" ;;\n", f);
		}
	}
	fputs("\tesac\n", f);
}

void cli_completion_bash(FILE *f, const struct cli_object *objs, size_t n,
			 const struct cli_optdef *global)
{
	fputs("# bash completion for canopy: source <(canopy completion bash)\n"
	      "_canopy() {\n"
	      "\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=\"\" obj=\"\" "
	      "verb=\"\" i w words\n"
	      "\t[ \"$COMP_CWORD\" -gt 0 ] && "
	      "prev=${COMP_WORDS[COMP_CWORD-1]}\n"
	      "\tcase $prev in\n"
	      "\t-o|--output) COMPREPLY=($(compgen -W \"table json\" -- "
	      "\"$cur\")); return 0 ;;\n"
	      "\t--kernel|--initrd) COMPREPLY=($(compgen -f -- \"$cur\")); "
	      "return 0 ;;\n",
	      f);
	value_opts(f, objs, n);
	fputs(") return 0 ;;\n"
	      "\tesac\n"
	      "\tfor ((i = 1; i < COMP_CWORD; i++)); do\n"
	      "\t\tw=${COMP_WORDS[i]}\n"
	      "\t\tcase $w in\n",
	      f);
	value_opts(f, objs, n);
	fputs(") ((i++)) ;;\n"
	      "\t\t-*) ;;\n"
	      "\t\t*) if [ -z \"$obj\" ]; then obj=$w; "
	      "elif [ -z \"$verb\" ]; then verb=$w; fi ;;\n"
	      "\t\tesac\n"
	      "\tdone\n"
	      "\twords=\"",
	      f);
	opt_words(f, global);
	fputs("\"\n", f);
	cases(f, objs, n);
	fputs("\tCOMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
	      "}\n"
	      "complete -F _canopy canopy\n",
	      f);
}
