package dev.flotilla.images.oci;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import java.util.LinkedHashMap;
import java.util.Map;

/** An OCI content descriptor: what a manifest or index says about a blob it points to. */
public record Descriptor(String mediaType, Digest digest, long size, Map<String, String> annotations, Platform platform) {

  public static final String REF_NAME = "org.opencontainers.image.ref.name";

  public Descriptor {
    annotations = Map.copyOf(annotations == null ? Map.of() : annotations);
    if (size < 0) {
      throw new ImageException("descriptor of " + digest + " has a negative size");
    }
  }

  public Descriptor(String mediaType, Digest digest, long size) {
    this(mediaType, digest, size, Map.of(), null);
  }

  static Descriptor fromJson(JsonNode n, String where) {
    if (n == null || !n.isObject()) {
      throw new ImageException(where + ": descriptor missing");
    }
    String d = Json.text(n, "digest");
    JsonNode size = n.get("size");
    if (d == null || size == null || !size.canConvertToLong()) {
      throw new ImageException(where + ": descriptor needs a digest and a size");
    }
    Map<String, String> ann = new LinkedHashMap<>();
    JsonNode a = n.get("annotations");
    if (a != null && a.isObject()) {
      a.fields().forEachRemaining(e -> ann.put(e.getKey(), e.getValue().asText()));
    }
    return new Descriptor(Json.text(n, "mediaType"), Digest.parse(d), size.asLong(), ann, Platform.fromJson(n.get("platform")));
  }

  ObjectNode toJson() {
    ObjectNode n = Json.MAPPER.createObjectNode();
    n.put("mediaType", mediaType);
    n.put("digest", digest.toString());
    n.put("size", size);
    if (!annotations.isEmpty()) {
      ObjectNode a = n.putObject("annotations");
      annotations.forEach(a::put);
    }
    if (platform != null) {
      ObjectNode p = n.putObject("platform");
      p.put("architecture", platform.architecture());
      p.put("os", platform.os());
      if (platform.variant() != null) {
        p.put("variant", platform.variant());
      }
    }
    return n;
  }
}
