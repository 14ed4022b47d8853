-- Run once by the postgres image on an empty volume (docker-compose.yml mounts it into
-- /docker-entrypoint-initdb.d): MLflow's tracking store lives beside Dagster's storage, in its
-- own database because both name a table `runs`. `bike stack up` creates it itself.
CREATE DATABASE mlflow;
