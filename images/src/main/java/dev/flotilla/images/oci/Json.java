package dev.flotilla.images.oci;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.flotilla.images.ImageException;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/** One configured mapper and the few tolerant accessors the spec objects need. */
public final class Json {
  private Json() {}

  public static final ObjectMapper MAPPER = new ObjectMapper()
      .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false)
      .configure(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS, true);

  public static JsonNode read(byte[] bytes, String what) {
    try {
      JsonNode n = MAPPER.readTree(bytes);
      if (n == null || !n.isObject()) {
        throw new ImageException(what + " is not a JSON object");
      }
      return n;
    } catch (IOException e) {
      throw new ImageException(what + " is not valid JSON: " + e.getMessage(), e);
    }
  }

  public static byte[] write(Object value) {
    try {
      return MAPPER.writeValueAsBytes(value);
    } catch (IOException e) {
      throw new IllegalStateException("cannot serialize " + value.getClass().getSimpleName(), e);
    }
  }

  public static String text(JsonNode n, String field) {
    JsonNode v = n == null ? null : n.get(field);
    return v == null || v.isNull() ? null : v.asText();
  }

  public static List<String> strings(JsonNode n, String field) {
    JsonNode v = n == null ? null : n.get(field);
    List<String> out = new ArrayList<>();
    if (v != null && v.isArray()) {
      v.forEach(e -> out.add(e.asText()));
    }
    return out;
  }
}
