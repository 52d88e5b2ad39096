#!/bin/bash
# Set up the API workshop for {{ STUDENT }}
{% if MODEWS == 'CHLG' %}
echo "challenge mode"
{% endif %}
export API_HOST={{ hostvars[inventory_hostname]['IP-WKSHP-API101'] }}
{% for i in range(2) %}
echo "line {{ i }}"
{% endfor %}
echo done
