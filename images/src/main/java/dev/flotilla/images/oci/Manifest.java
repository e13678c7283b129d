package dev.flotilla.images.oci;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.flotilla.images.ImageException;
import java.util.ArrayList;
import java.util.List;

/** A single-platform image manifest (OCI or Docker schema 2): one config and the layers, bottom first. */
public record Manifest(String mediaType, Descriptor config, List<Descriptor> layers) {

  public Manifest {
    layers = List.copyOf(layers);
  }

  public static Manifest parse(byte[] bytes) {
    JsonNode n = Json.read(bytes, "image manifest");
    JsonNode v = n.get("schemaVersion");
    if (v == null || v.asInt() != 2) {
      throw new ImageException("image manifest has schemaVersion " + v + "; only 2 is supported");
    }
    String mt = Json.text(n, "mediaType");
    if (mt != null && !MediaTypes.MANIFESTS.contains(mt)) {
      throw new ImageException("not an image manifest: mediaType " + mt);
    }
    Descriptor config = Descriptor.fromJson(n.get("config"), "image manifest config");
    List<Descriptor> layers = new ArrayList<>();
    JsonNode ls = n.get("layers");
    if (ls == null || !ls.isArray()) {
      throw new ImageException("image manifest has no layers array");
    }
    for (JsonNode l : ls) {
      layers.add(Descriptor.fromJson(l, "image manifest layer " + layers.size()));
    }
    return new Manifest(mt == null ? MediaTypes.OCI_MANIFEST : mt, config, layers);
  }

  /** The OCI JSON form, keys in a fixed order so the same manifest always has the same digest. */
  public byte[] toJson() {
    ObjectNode n = Json.MAPPER.createObjectNode();
    n.put("schemaVersion", 2);
    n.put("mediaType", mediaType);
    n.set("config", config.toJson());
    ArrayNode a = n.putArray("layers");
    layers.forEach(l -> a.add(l.toJson()));
    return Json.write(n);
  }

  public long totalSize() {
    return config.size() + layers.stream().mapToLong(Descriptor::size).sum();
  }
}
