#
# Private user and password for API communication
#
export WODAPIDBUSER="moderator"
export WODAPIDBUSERPWD="Mod3rat0r-Secret"
export WODAPIDBADMIN="hackshack"
export WODAPIDBADMINPWD="Adm1n-Secret"
