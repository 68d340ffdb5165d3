/* canopy CLI: `image import` and `image list` (docs/images.md). */
#include <errno.h>
#include <stdio.h>

#include "cli/cli.h"

#define M_IMPORT_IMAGE "/canopy.v1.ImageService/ImportImage"
#define M_LIST_IMAGES "/canopy.v1.ImageService/ListImages"

static int image_import(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__ImportImageRequest req =
		CANOPY__V1__IMPORT_IMAGE_REQUEST__INIT;
	Canopy__V1__Task *t;
	int rc;

	if (!cli_args_get(a, "datastore") || !cli_args_get(a, "name"))
		return cli_fail(c, CLI_EXIT_USAGE,
				"image import needs --datastore DS and "
				"--name NAME");
	req.url = (char *)a->pos[0];
	req.datastore = (char *)cli_args_get(a, "datastore");
	req.name = (char *)cli_args_get(a, "name");
	if (cli_args_get(a, "sha256"))
		req.sha256 = (char *)cli_args_get(a, "sha256");
	rc = cli_call(c, M_IMPORT_IMAGE, &req.base,
		      &canopy__v1__task__descriptor, (ProtobufCMessage **)&t);
	if (rc)
		return rc;
	rc = cli_task_after(c, t, cli_args_has(a, "no-wait"));
	protobuf_c_message_free_unpacked(&t->base, NULL);
	return rc;
}

static int file_row(struct cli_table *t, const ProtobufCMessage *m,
		    uint64_t now)
{
	const Canopy__V1__DatastoreFile *f =
		(const Canopy__V1__DatastoreFile *)m;
	char size[32], alloc[32], age[32];
	const char *row[] = { f->name, size, alloc, age };

	cli_fmt_bytes(size, sizeof(size), f->size_bytes);
	cli_fmt_bytes(alloc, sizeof(alloc), f->allocated_bytes);
	cli_fmt_age(age, sizeof(age), f->modified_unix_ms, now);
	return cli_table_add(t, row);
}

static int image_list(struct cli *c, const struct cli_args *a)
{
	static const char *const hdr[] = { "NAME", "SIZE", "ALLOCATED",
					   "MODIFIED" };
	static const struct cli_list l = {
		.method = M_LIST_IMAGES,
		.resp_desc = &canopy__v1__list_images_response__descriptor,
		.field = "files",
		.ncols = CN_ARRAY_SIZE(hdr),
		.hdr = hdr,
		.row = file_row,
	};
	Canopy__V1__ListImagesRequest req =
		CANOPY__V1__LIST_IMAGES_REQUEST__INIT;

	if (!cli_args_get(a, "datastore"))
		return cli_fail(c, CLI_EXIT_USAGE,
				"image list needs --datastore DS");
	req.datastore = (char *)cli_args_get(a, "datastore");
	return cli_list_run(c, &l, &req.base);
}

static const struct cli_optdef list_opts[] = {
	{ .name = "datastore", .has_arg = true },
	{ 0 },
};

static const struct cli_optdef import_opts[] = {
	{ .name = "datastore", .has_arg = true },
	{ .name = "name", .has_arg = true },
	{ .name = "sha256", .has_arg = true },
	{ .name = "no-wait" },
	{ 0 },
};

const struct cli_cmd cli_image_cmds[] = {
	{ .object = "image",
	  .verb = "import",
	  .args = "URL --datastore DS --name NAME [--sha256 HEX] [--no-wait]",
	  .summary = "Download an image (https) into a datastore file, as a "
		     "task.",
	  .help = "  --datastore DS      the datastore to write to (a "
		  "connected host must have it)\n"
		  "  --name NAME         the file's name on the datastore\n"
		  "  --sha256 HEX        the image's SHA-256; a mismatch fails "
		  "the task\n"
		  "                      and deletes the download\n"
		  "  --no-wait           print the task id and return at once "
		  "(the default\n"
		  "                      waits for the task, showing its "
		  "progress)\n",
	  .opts = import_opts,
	  .min_pos = 1,
	  .max_pos = 1,
	  .run = image_import },
	{ .object = "image",
	  .verb = "list",
	  .args = "--datastore DS",
	  .summary = "List the files of a datastore (read by a connected "
		     "host that has it).",
	  .help = "  --datastore DS      the datastore\n",
	  .opts = list_opts,
	  .run = image_list },
	{ 0 },
};
