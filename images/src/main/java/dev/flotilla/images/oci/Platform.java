package dev.flotilla.images.oci;

import com.fasterxml.jackson.databind.JsonNode;

/** The platform of an index entry. We run linux/amd64 only, so that is what an index resolves to. */
public record Platform(String os, String architecture, String variant) {

  public static final Platform LINUX_AMD64 = new Platform("linux", "amd64", null);

  static Platform fromJson(JsonNode n) {
    if (n == null || !n.isObject()) {
      return null;
    }
    return new Platform(Json.text(n, "os"), Json.text(n, "architecture"), Json.text(n, "variant"));
  }

  public boolean matches(Platform wanted) {
    return wanted.os.equals(os) && wanted.architecture.equals(architecture);
  }

  @Override
  public String toString() {
    return os + "/" + architecture + (variant == null ? "" : "/" + variant);
  }
}
