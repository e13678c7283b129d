package dev.flotilla.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.google.protobuf.Timestamp;
import dev.flotilla.api.v1.Image;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.Test;

class ImageOutputTest {
  static final String DIGEST = "sha256:" + "ab".repeat(32);
  static final Image NAMED = Image.newBuilder().addNames("docker.io/library/busybox:latest").addNames("docker.io/me/bb:1")
      .setDigest(DIGEST).setSize(2_202_009).setOwner("shared").setLastUsed(Timestamp.newBuilder().setSeconds(1_000))
      .setCreated(Timestamp.newBuilder().setSeconds(60)).build();
  static final Image UNNAMED = Image.newBuilder().setDigest("sha256:" + "cd".repeat(32)).setSize(512).setOwner("yours").build();

  @Test
  void the_table_has_a_row_per_name_and_none_for_unnamed_images() {
    assertEquals(
        "NAME                              DIGEST               SIZE     OWNER   CREATED  LAST USED\n"
            + "docker.io/library/busybox:latest  sha256:abababababab  2.1 MiB  shared  16m ago  1m ago\n"
            + "docker.io/me/bb:1                 sha256:abababababab  2.1 MiB  shared  16m ago  1m ago\n"
            + "<none>                            sha256:cdcdcdcdcdcd  512 B    yours   -        -\n",
        ImageText.table(List.of(NAMED, UNNAMED), Instant.ofEpochSecond(1_060)));
  }

  @Test
  void json_is_an_array_of_objects() {
    assertEquals("[\n"
        + "  {\n    \"names\": [\"docker.io/library/busybox:latest\", \"docker.io/me/bb:1\"],\n    \"digest\": \"" + DIGEST + "\",\n"
        + "    \"size\": 2202009,\n    \"owner\": \"shared\",\n    \"created\": \"1970-01-01T00:01:00Z\",\n"
        + "    \"lastUsed\": \"1970-01-01T00:16:40Z\"\n  },\n"
        + "  {\n    \"names\": [],\n    \"digest\": \"sha256:" + "cd".repeat(32) + "\",\n"
        + "    \"size\": 512,\n    \"owner\": \"yours\",\n    \"created\": null,\n    \"lastUsed\": null\n  }\n"
        + "]\n", ImageText.array(List.of(NAMED, UNNAMED)));
    assertEquals("[]\n", ImageText.array(List.of()));
  }

  @Test
  void pull_and_import_print_name_and_digest() {
    assertEquals("docker.io/library/busybox:latest " + DIGEST + "\n", ImageText.line(NAMED));
    assertEquals("sha256:" + "cd".repeat(32) + "\n", ImageText.line(UNNAMED));
  }
}
