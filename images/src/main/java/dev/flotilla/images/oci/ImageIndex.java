package dev.flotilla.images.oci;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.flotilla.images.ImageException;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;

/** An OCI image index or Docker manifest list: manifests per platform (or, in a layout, per name). */
public record ImageIndex(String mediaType, List<Descriptor> manifests) {

  public ImageIndex {
    manifests = List.copyOf(manifests);
  }

  public static ImageIndex parse(byte[] bytes) {
    JsonNode n = Json.read(bytes, "image index");
    JsonNode v = n.get("schemaVersion");
    if (v == null || v.asInt() != 2) {
      throw new ImageException("image index has schemaVersion " + v + "; only 2 is supported");
    }
    List<Descriptor> ms = new ArrayList<>();
    JsonNode a = n.get("manifests");
    if (a == null || !a.isArray()) {
      throw new ImageException("image index has no manifests array");
    }
    for (JsonNode m : a) {
      ms.add(Descriptor.fromJson(m, "image index entry " + ms.size()));
    }
    String mt = Json.text(n, "mediaType");
    return new ImageIndex(mt == null ? MediaTypes.OCI_INDEX : mt, ms);
  }

  /** The manifest for {@code wanted}; an index without it is an error that lists what it has. */
  public Descriptor select(Platform wanted) {
    Descriptor any = null;
    for (Descriptor d : manifests) {
      if (d.platform() != null && d.platform().matches(wanted)) {
        if (d.platform().variant() == null || d.platform().variant().equals("v1")) {
          return d;
        }
        any = any == null ? d : any;
      }
    }
    if (any != null) {
      return any;
    }
    String have = manifests.stream()
        .map(d -> d.platform() == null ? "(no platform)" : d.platform().toString())
        .collect(Collectors.joining(", "));
    throw new ImageException("the image has no " + wanted + " variant (it has: " + (have.isEmpty() ? "nothing" : have) + ")");
  }

  public byte[] toJson() {
    ObjectNode n = Json.MAPPER.createObjectNode();
    n.put("schemaVersion", 2);
    n.put("mediaType", mediaType);
    ArrayNode a = n.putArray("manifests");
    manifests.forEach(m -> a.add(m.toJson()));
    return Json.write(n);
  }
}
