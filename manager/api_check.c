/* canopy-managerd: image file name and checksum checks of API requests. */
#include <string.h>

#include "manager/api_check.h"

int mgr_image_name_valid(const char *s)
{
	size_t n = strlen(s), part = 0;

	if (n == 0 || n > MGR_IMAGE_NAME_MAX)
		return 0;
	for (size_t i = 0; i <= n; i++) {
		char c = s[i];

		if (c == '/' || c == '\0') {
			if (part == 0 || (part == 1 && s[i - 1] == '.') ||
			    (part == 2 && s[i - 1] == '.' && s[i - 2] == '.'))
				return 0;
			part = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (c >= '0' && c <= '9') || c == '.' || c == '_' ||
			   c == '-') {
			part++;
		} else {
			return 0;
		}
	}
	return 1;
}

int mgr_sha256_parse(const char *s, char out[65])
{
	size_t n = strlen(s);

	if (n != 0 && n != 64)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (!strchr("0123456789abcdefABCDEF", s[i]))
			return 0;
		out[i] = (s[i] >= 'A' && s[i] <= 'F') ? (char)(s[i] + 32) :
							s[i];
	}
	out[n] = '\0';
	return 1;
}
