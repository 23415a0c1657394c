from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("chatmodel_app", "0003_run_engine")]

    operations: list = []
