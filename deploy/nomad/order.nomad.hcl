# The order service as a Nomad job. Nomad owns the Consul registration (the
# service block below, with the health check the process would register
# itself), so the process runs with RAMPART_REGISTRY_SELF_REGISTER=false and
# only discovers through Consul. docs/deploy.md explains every choice;
# `make nomad-up` runs this file.

variable "count" {
  type        = number
  default     = 2
  description = "instances of the service"
}

variable "driver" {
  type        = string
  default     = "raw_exec"
  description = "task driver: raw_exec for a dev agent, exec (isolated, needs root) in production"
}

variable "binary" {
  type        = string
  description = "absolute path of the order binary on the client, or local/order when an artifact is fetched"
}

variable "config" {
  type        = string
  description = "absolute path of configs/order.yaml on the client"
}

variable "consul_addr" {
  type        = string
  default     = "127.0.0.1:8500"
  description = "Consul agent the service discovers through (CONSUL_HTTP_ADDR)"
}

variable "security_mode" {
  type        = string
  description = "security.mode of every instance (RAMPART_SECURITY_MODE): plaintext, or mtls (certificates from Consul's CA, callers authorized by intentions); no default, as the registration below depends on it"

  validation {
    condition     = contains(["plaintext", "mtls"], var.security_mode)
    error_message = "The security_mode is plaintext or mtls."
  }
}

variable "consul_token" {
  type        = string
  default     = ""
  description = "Consul ACL token of this service (service:write on itself, service:read on its callees, node:read), written to the task's secrets dir and read through CONSUL_HTTP_TOKEN_FILE; empty: none. In production a Consul workload identity or Vault issues it instead"
}

variable "data_dir" {
  type        = string
  description = "directory of the SQLite file every instance on the client shares"
}

variable "data_driver" {
  type        = string
  default     = ""
  description = "data.driver for every instance (RAMPART_DATA_DRIVER): empty keeps the config file's; postgres for more than one client"
}

variable "database_url" {
  type        = string
  default     = ""
  description = "PostgreSQL URL (DATABASE_URL) when data_driver is postgres; in production render it from Nomad Variables or Vault rather than passing a password here"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "revision" {
  type        = string
  default     = "1"
  description = "free-form group meta; changing it rolls every allocation"
}

locals {
  mtls = var.security_mode == "mtls"
}

job "order" {
  datacenters = var.datacenters
  type        = "service"

  # One allocation at a time, promoted only when Consul's gRPC check has
  # passed for min_healthy_time; a deployment that never gets healthy
  # reverts to the last good version.
  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "3s"
    healthy_deadline  = "1m"
    progress_deadline = "3m"
    auto_revert       = true
  }

  group "order" {
    count = var.count

    meta {
      revision = var.revision
    }

    # grpc and http bind loopback (docs/deploy.md: on a multi-host client,
    # the advertised interface); gateway is the public HTTP/JSON API, bound
    # on the client's address (NOMAD_ADDR_gateway) for clients outside the
    # cluster, and registered as the service's meta gateway.
    network {
      port "grpc" {}
      port "http" {}
      port "gateway" {}
    }

    # Nomad deregisters the service first, waits this long so that every
    # Consul watcher has dropped the instance, and only then sends
    # kill_signal. The process then goes NOT_SERVING, drains for
    # server.drain_delay (1s) and stops gracefully.
    shutdown_delay = "3s"

    restart {
      attempts = 3
      interval = "1m"
      delay    = "2s"
      mode     = "fail"
    }

    reschedule {
      delay          = "5s"
      delay_function = "exponential"
      max_delay      = "1m"
      unlimited      = true
    }

    service {
      name     = "order"
      provider = "consul"
      port     = "grpc"

      # What the process registers itself: endpoint-0 tells callers the
      # credentials the port wants (a TLS client takes only grpcs://).
      meta {
        endpoint-0 = local.mtls ? "grpcs://${NOMAD_ADDR_grpc}?isSecure=true" : "grpc://${NOMAD_ADDR_grpc}?isSecure=false"
        http       = "${NOMAD_ADDR_http}"
        gateway    = "${NOMAD_ADDR_gateway}"
      }

      # The check the process would register itself: plaintext, Consul calls
      # the standard grpc.health.v1 service on the grpc port; mtls, GET
      # /readyz on the http port, since the grpc port takes only clients
      # with a certificate of the trust domain and Consul has none to
      # present. Both turn at once when the process stops.
      check {
        name     = local.mtls ? "http readiness" : "grpc health"
        type     = local.mtls ? "http" : "grpc"
        port     = local.mtls ? "http" : "grpc"
        path     = local.mtls ? "/readyz" : ""
        interval = "1s"
        timeout  = "1s"
      }
    }

    task "order" {
      driver = var.driver

      config {
        command = var.binary
        args    = ["-conf", var.config]
      }

      env {
        RAMPART_GRPC_ADDR              = "127.0.0.1:${NOMAD_PORT_grpc}"
        RAMPART_HTTP_ADDR              = "127.0.0.1:${NOMAD_PORT_http}"
        RAMPART_GATEWAY_ADDR           = "${NOMAD_ADDR_gateway}"
        RAMPART_REGISTRY_SELF_REGISTER = "false"
        RAMPART_SECURITY_MODE          = var.security_mode
        CONSUL_HTTP_TOKEN_FILE         = var.consul_token == "" ? "" : "${NOMAD_SECRETS_DIR}/consul-token"
        RAMPART_SQLITE_PATH            = "${var.data_dir}/order.db"
        RAMPART_DATA_DRIVER            = var.data_driver
        DATABASE_URL                   = var.database_url
        CONSUL_HTTP_ADDR               = var.consul_addr
      }

      # The token as a file in the task's secrets dir, never in the
      # environment (which child processes and crash reports inherit). The
      # value still sits in the job as a variable: docs/deploy.md says how
      # production keeps it out (Consul workload identity, Vault).
      dynamic "template" {
        for_each = var.consul_token == "" ? [] : [var.consul_token]
        content {
          data        = template.value
          destination = "secrets/consul-token"
          perms       = "600"
          change_mode = "restart"
        }
      }

      # SIGTERM starts the graceful stop; kill_timeout covers the drain
      # (server.drain_delay, 1s) plus GracefulStop (server.stop_timeout,
      # 10s) before Nomad sends SIGKILL.
      kill_signal  = "SIGTERM"
      kill_timeout = "15s"

      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
