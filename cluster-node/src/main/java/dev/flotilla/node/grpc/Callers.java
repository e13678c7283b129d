package dev.flotilla.node.grpc;

import dev.flotilla.node.auth.TokenAuth;
import io.grpc.Status;
import java.util.Set;
import org.apache.pekko.grpc.javadsl.Metadata;

/** Who is calling: the tenant behind a call's bearer token. */
final class Callers {
  private Callers() {}

  static String tenant(TokenAuth auth, Metadata md) {
    return auth.tenantOf(md.getText("authorization").orElse(null))
        .orElseThrow(() -> GrpcErrors.status(Status.UNAUTHENTICATED,
            "missing or unknown bearer token: send 'authorization: Bearer <token>' (the default tenant's token is in <data-dir>/default.token)"));
  }

  static String admin(TokenAuth auth, Set<String> adminTenants, Metadata md) {
    String tenant = tenant(auth, md);
    if (!adminTenants.contains(tenant)) {
      throw GrpcErrors.status(Status.PERMISSION_DENIED,
          "tenant '" + tenant + "' may not administer the cluster (see flotilla.auth.admin-tenants)");
    }
    return tenant;
  }
}
