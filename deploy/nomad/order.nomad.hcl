# The order service as a Nomad job. Nomad owns the Consul registration (the
# service block below, with a gRPC health check), so the process runs with
# RAMPART_REGISTRY_SELF_REGISTER=false and only discovers through Consul.
# docs/deploy.md explains every choice; `make nomad-up` runs this file.

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

      meta {
        http    = "${NOMAD_ADDR_http}"
        gateway = "${NOMAD_ADDR_gateway}"
      }

      # Consul calls the standard grpc.health.v1 service on the grpc port:
      # the same check the self-registering mode uses.
      check {
        name     = "grpc health"
        type     = "grpc"
        port     = "grpc"
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
        RAMPART_SQLITE_PATH            = "${var.data_dir}/order.db"
        RAMPART_DATA_DRIVER            = var.data_driver
        DATABASE_URL                   = var.database_url
        CONSUL_HTTP_ADDR               = var.consul_addr
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
