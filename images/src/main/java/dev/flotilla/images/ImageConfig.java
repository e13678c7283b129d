package dev.flotilla.images;

import com.fasterxml.jackson.databind.JsonNode;
import dev.flotilla.images.oci.Json;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.List;

/**
 * The parts of an image's config (OCI image-spec {@code config.md}) a sandbox uses: exec defaults
 * and the layers' uncompressed digests, which the unpacker checks every layer against.
 *
 * @param env {@code KEY=value} entries, in order
 * @param workingDir the default working directory, or "" for /
 * @param user {@code user[:group]} as written, or ""
 * @param entrypoint may be empty
 * @param cmd may be empty
 * @param diffIds sha256 of each layer's uncompressed tar, bottom layer first
 * @param os the config's os ("linux")
 * @param architecture the config's architecture ("amd64")
 * @param created when the image was built (the config's {@code created}), or null if it has none or an unreadable one
 */
public record ImageConfig(
    List<String> env,
    String workingDir,
    String user,
    List<String> entrypoint,
    List<String> cmd,
    List<Digest> diffIds,
    String os,
    String architecture,
    Instant created) {

  public ImageConfig {
    env = List.copyOf(env);
    entrypoint = List.copyOf(entrypoint);
    cmd = List.copyOf(cmd);
    diffIds = List.copyOf(diffIds);
    workingDir = workingDir == null ? "" : workingDir;
    user = user == null ? "" : user;
  }

  public static ImageConfig parse(byte[] json) {
    JsonNode n = Json.read(json, "image config");
    JsonNode c = n.get("config");
    List<Digest> diffIds = new ArrayList<>();
    JsonNode rootfs = n.get("rootfs");
    for (String d : Json.strings(rootfs, "diff_ids")) {
      diffIds.add(Digest.parse(d));
    }
    return new ImageConfig(
        Json.strings(c, "Env"),
        Json.text(c, "WorkingDir"),
        Json.text(c, "User"),
        Json.strings(c, "Entrypoint"),
        Json.strings(c, "Cmd"),
        diffIds,
        Json.text(n, "os"),
        Json.text(n, "architecture"),
        created(Json.text(n, "created")));
  }

  private static Instant created(String rfc3339) {
    if (rfc3339 == null || rfc3339.length() > 64) {
      return null;
    }
    try {
      return OffsetDateTime.parse(rfc3339).toInstant();
    } catch (DateTimeParseException e) {
      return null; // informational only: an image with an odd date still runs
    }
  }
}
